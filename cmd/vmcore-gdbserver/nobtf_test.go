package main

import (
	"io"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// gdbSessionText runs gdb against `serve` of a vmlinux and dump and returns
// what it printed from the first command on (not the file names it read).
func gdbSessionText(t *testing.T, vmlinux, dump string, cmds ...string) string {
	t.Helper()
	args := append([]string{"-q", "-batch", "-nx"}, gdbSlowServer...)
	args = append(args, "-ex", "set pagination off", "-ex", "set width 0", vmlinux,
		"-ex", "target remote | "+serverCmd(vmlinux, []string{dump}), "-ex", "echo ==START==\\n")
	for _, c := range cmds {
		args = append(args, "-ex", c)
	}
	out := runCmd(t, requireGDB(t), args...)
	_, after, ok := strings.Cut(out, "==START==\n")
	if !ok {
		t.Fatalf("gdb printed no marker:\n%s", tail(out, 40))
	}
	return after
}

// gdb against `serve` of the BTF-less variant of the 6.1 oom fixture, with
// no switch set (types from the vmlinux's DWARF), shows the same threads
// and backtraces as against the BTF-ful oom fixture.
func TestGDBNoBTF(t *testing.T) {
	t.Setenv(symbols.TypesEnv, "") // the server inherits it: not forced
	vmlinux, dump := fixtures.NoBTF(t)
	cmds := []string{"info threads", "echo ==BT==\\n", "bt", "echo ==SLEEPING==\\n", "thread 5", "bt", "echo ==END==\\n"}
	want := gdbSessionText(t, fixtures.Path(t, "kernel", "vmlinux"), fixtures.Path(t, "oom", "vmcore.lzo"), cmds...)
	got := gdbSessionText(t, vmlinux, dump, cmds...)

	threads, rest, _ := strings.Cut(want, "==BT==")
	bt, sleeping, _ := strings.Cut(rest, "==SLEEPING==")
	ts := parseThreads(threads)
	if len(ts) < 50 {
		t.Fatalf("%d threads with BTF:\n%s", len(ts), threads)
	}
	sel := 0
	for _, th := range ts {
		if th.selected {
			sel++
			if !th.panic || th.name != "stress" {
				t.Errorf("selected thread %+v is not the panicking stress", th)
			}
		}
	}
	if fns := frameFuncs(bt); sel != 1 || len(fns) < 5 || !strings.Contains(bt, "out_of_memory") {
		t.Errorf("%d selected threads; bt with BTF: %q", sel, bt)
	}
	if fns := frameFuncs(sleeping); len(fns) < 3 || !strings.Contains(sleeping, "__schedule") {
		t.Errorf("thread 5's bt with BTF: %q", sleeping)
	}
	if !strings.Contains(got, "==END==") || got != want {
		t.Errorf("gdb differs without BTF:\nBTF:\n%s\nDWARF:\n%s", want, got)
	}
}

// Without a vmlinux, the BTF-less dump is refused in one line that says it
// has no BTF.
func TestNoBTFWithoutVmlinux(t *testing.T) {
	t.Setenv(symbols.TypesEnv, "")
	_, dump := fixtures.NoBTF(t)
	for _, cmd := range [][]string{{"ps"}, {"bt"}, {"sys"}, {"struct", "--", "list_head", "init_task"}, {"whatis", "--", "struct list_head"}} {
		out, stderr, code := runCLI(t, append([]string{cmd[0], dump}, cmd[1:]...)...)
		checkOneLineError(t, stderr, code, dump, "the dumped kernel has no BTF", "give the vmlinux")
		if len(out) != 0 {
			t.Errorf("%s printed %q", cmd, out)
		}
	}
}

// gdb on the BTF-less dump alone: what needs no type remains (one thread
// per CPU from the notes, memory, and the symbol object's kallsyms
// symbols): the panicking CPU's frame 0 is named as with the vmlinux.
func TestGDBNoBTFWithoutVmlinux(t *testing.T) {
	t.Setenv(symbols.TypesEnv, "")
	vmlinux, dump := fixtures.NoBTF(t)
	k, _, closeAll, err := openKernel(vmlinux, []string{dump}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	var fn string
	for _, tk := range k.Tasks {
		if tk.Panic && tk.OnCPU != nil && tk.OnCPU.Regs != nil {
			pc, _ := tk.OnCPU.Regs.Get(amd64.RIP)
			fn, _, _ = strings.Cut(k.SymbolName(pc), "+")
		}
	}
	out := gdbNoFile(t, dump, []string{"info threads", "bt 1"})
	// A CPU's thread, with no task_struct, is named by the command the
	// kernel log gives its pid, else cpuN.
	if n := strings.Count(out, "(from the CPU's note) cpu "); n != len(k.CPUs) {
		t.Errorf("%d CPU threads, %d CPUs:\n%s", n, len(k.CPUs), out)
	}
	if fn == "" || !strings.Contains(out, " in "+fn+" ()") {
		t.Errorf("frame 0 is not in %q:\n%s", fn, out)
	}
}
