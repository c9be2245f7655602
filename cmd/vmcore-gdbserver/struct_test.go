package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// struct and whatis from the shell: operands after --, text and JSON,
// with the vmlinux and from the dump's BTF alone; a bad operand is one
// line of error.
func TestStructCLI(t *testing.T) {
	vmlinux, dump := fixtures.Path(t, "kernel", "vmlinux"), fixtures.Path(t, "oom", "vmcore.lzo")
	for _, files := range [][]string{{vmlinux, dump}, {dump}} {
		out, stderr, code := runCLI(t, append(append([]string{"struct"}, files...), "--", "task_struct.comm,pid", "init_task")...)
		if code != 0 || !strings.HasPrefix(string(out), "  comm = \"swapper/0") || !strings.Contains(string(out), "\n  pid = 0,\n") {
			t.Errorf("struct %v: %d %s\n%s", files, code, stderr, out)
		}
		out, stderr, code = runCLI(t, append(append([]string{"struct", "--json"}, files...), "--", "list_head", "init_task")...)
		var r struct {
			Type  string
			Value struct {
				Members []struct{ Name, Value string }
			}
		}
		if err := json.Unmarshal(out, &r); code != 0 || err != nil || r.Type != "struct list_head" || len(r.Value.Members) != 2 || r.Value.Members[0].Name != "next" {
			t.Errorf("struct --json %v: %d %v %s\n%s", files, code, err, stderr, out)
		}
		out, stderr, code = runCLI(t, append(append([]string{"whatis"}, files...), "--", "schedule")...)
		if code != 0 || string(out) != "void schedule(void);\n" {
			t.Errorf("whatis schedule %v: %d %s\n%q", files, code, stderr, out)
		}
		_, stderr, code = runCLI(t, append(append([]string{"struct"}, files...), "--", "list_head", "10")...)
		if len(files) == 1 { // the note on using the dump's own kallsyms and BTF comes first
			_, stderr, _ = strings.Cut(stderr, "\n")
		}
		checkOneLineError(t, stderr, code, "0x10")
	}
	_, stderr, code := runCLI(t, "struct", vmlinux, dump)
	checkOneLineError(t, stderr, code, "usage")
}

// struct answers as a monitor command inside gdb.
func TestGDBMonitorStruct(t *testing.T) {
	out := runGDB(t, gdbFixtures[0], "monitor struct task_struct.pid,tasks.next init_task", "monitor whatis struct list_head")
	for _, want := range []string{"  pid = 0,\n", "  tasks.next = 0x", "struct list_head {\n    struct list_head *next;"} {
		if !strings.Contains(out, want) {
			t.Errorf("monitor output lacks %q:\n%s", want, out)
		}
	}
}
