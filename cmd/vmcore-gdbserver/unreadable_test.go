package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// panicTaskPages loads the complete ELF dump of a scenario and returns
// its panicking task and the pages of that task's task_struct.
func panicTaskPages(t *testing.T, set fixtures.Set, scenario string) (*kernel.Task, []uint64) {
	t.Helper()
	d, err := vmcore.Open(set.Path(t, scenario, "vmcore.elf"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	v, err := symbols.Open(set.Path(t, "kernel", "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	k, err := kernel.Load(d, v)
	if err != nil {
		t.Fatal(err)
	}
	size, err := k.Types.Sizeof("task_struct")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range k.Tasks {
		if !task.Panic {
			continue
		}
		ps := d.PageSize()
		var pfns []uint64
		for va := task.Addr &^ (ps - 1); va < task.Addr+size; va += ps {
			tr, err := k.VM.Translate(va)
			if err != nil {
				t.Fatal(err)
			}
			pfns = append(pfns, tr.Phys/ps)
		}
		return task, pfns
	}
	t.Fatal("no panicking task in the complete dump")
	return nil, nil
}

// The running, panicking task whose task_struct the dump lacks (as
// makedumpfile 1.7.2 drops on 6.12) is still gdb's selected thread with
// its own backtrace, and still the task of sys, bt and ps; the notes on
// what is missing go to stderr.
func TestPanicTaskUnreadable(t *testing.T) {
	gdb := requireGDB(t)
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			want, pfns := panicTaskPages(t, set, "oom")
			dump := fixtures.ExcludePages(t, set.Path(t, "oom", "vmcore.lzo"), pfns)
			vmlinux := set.Path(t, "kernel", "vmlinux")
			out := runCmd(t, gdb, "-q", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0", vmlinux,
				"-ex", "target remote | "+serverCmd(vmlinux, []string{dump}), "-ex", "info threads", "-ex", "echo ==BT==\\n", "-ex", "bt")
			threads, bt, _ := strings.Cut(out, "==BT==")
			var sel *gdbThread
			ts := parseThreads(threads)
			for i := range ts {
				if ts[i].selected {
					sel = &ts[i]
				}
			}
			if sel == nil || sel.pid != int(want.PID) || !sel.panic || !sel.running || sel.name != want.Comm {
				t.Fatalf("selected thread %+v, want pid %d (%s), panicking:\n%s", sel, want.PID, want.Comm, threads)
			}
			if !strings.Contains(threads, "task_struct not in the dump") {
				t.Errorf("the thread does not say its task_struct is missing:\n%s", threads)
			}
			if fns := frameFuncs(bt); !isSubsequence(consoleTrace(t, set.Dir), fns) {
				t.Errorf("bt %v does not follow the kernel's own trace %v", fns, consoleTrace(t, set.Dir))
			}

			pid := strconv.Itoa(int(want.PID))
			stdout, stderr, code := runCLI(t, "sys", vmlinux, dump)
			if code != 0 || !strings.Contains(string(stdout), "PID: "+pid+"\n") || !strings.Contains(string(stdout), `COMMAND: "`+want.Comm+`"`) {
				t.Errorf("sys (exit %d, %s):\n%s", code, stderr, stdout)
			}
			stdout, stderr, code = runCLI(t, "bt", vmlinux, dump)
			if code != 0 || !strings.HasPrefix(string(stdout), "PID: "+pid+" ") || !strings.Contains(string(stdout), "task_struct not in the dump") {
				t.Errorf("bt (exit %d, %s):\n%s", code, stderr, stdout)
			}
			stdout, stderr, code = runCLI(t, "ps", vmlinux, dump)
			found := false
			for _, line := range strings.Split(string(stdout), "\n") {
				f := strings.Fields(line)
				if len(f) > 1 && f[0] == ">" && f[1] == pid {
					found = strings.Contains(line, want.Comm) && strings.Contains(line, "task_struct not in the dump")
				}
				if strings.HasPrefix(line, "note:") {
					t.Errorf("a note inside the ps table: %s", line)
				}
			}
			if code != 0 || !found || !strings.Contains(stderr, "note: ") {
				t.Errorf("ps (exit %d) does not list pid %d as running and unreadable, or no note on stderr %q:\n%s", code, want.PID, stderr, stdout)
			}
			// With --json the list stays JSON and the notes still go to
			// stderr.
			stdout, stderr, code = runCLI(t, "ps", "--json", vmlinux, dump)
			var list []map[string]any
			if err := json.Unmarshal(stdout, &list); code != 0 || err != nil || len(list) == 0 || !strings.Contains(stderr, "note: ") {
				t.Errorf("ps --json (exit %d, %v): no list on stdout or no note on stderr %q", code, err, stderr)
			}
		})
	}
}
