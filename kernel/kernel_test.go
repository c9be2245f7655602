package kernel

import (
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

func load(t testing.TB, files ...string) *Kernel {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, fixtures.Path(t, f))
	}
	d, err := vmcore.Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	v, err := symbols.Open(fixtures.Path(t, "kernel", "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	k, err := Load(d, v)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDump(t *testing.T) {
	k := load(t, "oom/vmcore.lzo")
	for _, w := range k.Warnings {
		t.Log("warning:", w)
	}
	for _, task := range k.Tasks {
		r, err := k.TaskRegisters(task)
		t.Logf("%6d %6d %c cpu%d %-16s oncpu=%v idle=%v panic=%v rip=%x rsp=%x %v", task.PID, task.TGID, task.State, task.CPU, task.Comm, task.OnCPU != nil, task.IsIdle, task.Panic, r.Value[RIP], r.Value[RSP], err)
	}
}
