package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// vm and files take the pid as --pid (-p), as bt does; without it they
// are the panicking task's; without a vmlinux they read the dump's BTF.
func TestVMFilesCLI(t *testing.T) {
	vmlinux, dump := fixtures.Path(t, "kernel", "vmlinux"), fixtures.Path(t, "oom", "vmcore.elf")
	out, stderr, code := runCLI(t, "vm", "--json", "--pid", "1", vmlinux, dump)
	var vm struct {
		PID  int `json:"pid"`
		VMAs []struct {
			Start, End, Name string
		} `json:"vmas"`
	}
	if err := json.Unmarshal(out, &vm); code != 0 || err != nil || vm.PID != 1 || len(vm.VMAs) == 0 {
		t.Fatalf("vm --json --pid 1: exit %d, %v, %+v\n%s", code, err, vm, stderr)
	}
	out, stderr, code = runCLI(t, "files", "-p", "1", vmlinux, dump)
	if code != 0 || !strings.Contains(string(out), "/dev/console") || !strings.Contains(string(out), "ROOT: /") {
		t.Fatalf("files -p 1: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = runCLI(t, "vm", dump)
	if code != 0 || !strings.Contains(string(out), `COMMAND: "stress"`) || !strings.Contains(string(out), "[stack]") {
		t.Fatalf("vm without vmlinux or pid: exit %d\n%s%s", code, out, stderr)
	}
	_, stderr, code = runCLI(t, "vm", "--pid", "999999", vmlinux, dump)
	checkOneLineError(t, stderr, code, "no task with pid 999999")
}
