package main

// Plain gdb (no frame filter, no script of ours) unwinds every task as
// the kernel does, with the ORC unwind object the server lists as a
// library (issue 10).

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbstub"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// walkFramesPy walks every thread's frames with gdb.newest_frame() and
// Frame.older(), one line a thread: "T tid frames last-pc stop-reason
// last-name unnamed-frames-before-the-last" and one "S tid pc name" line
// for the frame after each signal (pt_regs) frame, with that frame's
// function.
const walkFramesPy = `
import gdb
for th in gdb.selected_inferior().threads():
    th.switch()
    f = gdb.newest_frame()
    n, unnamed, last = 0, 0, None
    while f is not None and n < 300:
        if last is not None and last.type() == gdb.SIGTRAMP_FRAME:
            print("S %d %#x %s" % (th.ptid[1], f.pc(), last.name() or "??"))
        if last is not None and last.name() is None:
            unnamed += 1
        n += 1
        last = f
        f = f.older()
    print("T %d %d %#x %s %s %d" % (th.ptid[1], n, last.pc(), gdb.frame_stop_reason_string(last.unwind_stop_reason()).replace(" ", "_"), last.name() or "??", unnamed))
`

type gdbWalk struct {
	frames    int
	lastPC    uint64
	stop      string
	lastName  string
	unnamed   int
	afterSigs []uint64
	sigNames  []string
}

var walkLine = regexp.MustCompile(`(?m)^T (\d+) (\d+) 0x([0-9a-f]+) (\S+) (\S+) (\d+)$`)
var sigLine = regexp.MustCompile(`(?m)^S (\d+) 0x([0-9a-f]+) (\S+)$`)

func parseWalks(out string) map[gdbstub.ThreadID]*gdbWalk {
	ws := map[gdbstub.ThreadID]*gdbWalk{}
	for _, m := range walkLine.FindAllStringSubmatch(out, -1) {
		tid, _ := strconv.ParseUint(m[1], 10, 64)
		n, _ := strconv.Atoi(m[2])
		pc, _ := strconv.ParseUint(m[3], 16, 64)
		un, _ := strconv.Atoi(m[6])
		w := ws[gdbstub.ThreadID(tid)]
		if w == nil {
			w = &gdbWalk{}
			ws[gdbstub.ThreadID(tid)] = w
		}
		w.frames, w.lastPC, w.stop, w.lastName, w.unnamed = n, pc, m[4], m[5], un
	}
	for _, m := range sigLine.FindAllStringSubmatch(out, -1) {
		tid, _ := strconv.ParseUint(m[1], 10, 64)
		pc, _ := strconv.ParseUint(m[2], 16, 64)
		w := ws[gdbstub.ThreadID(tid)]
		if w == nil {
			w = &gdbWalk{}
			ws[gdbstub.ThreadID(tid)] = w
		}
		w.afterSigs = append(w.afterSigs, pc)
		w.sigNames = append(w.sigNames, m[3])
	}
	return ws
}

// The fixtures of the plain-flow unwinding test: one dump per series and
// scenario (the other formats of one dump unwind alike).
var unwindFixtures = []string{"oom-elf", "qemu57-elf", "6.12-oom-elf", "4.18-oom-elf", "4.18-sysrq-elf"}

func TestGDBPlainUnwind(t *testing.T) {
	for _, name := range unwindFixtures {
		var f gdbFixture
		for _, g := range gdbFixtures {
			if g.name == name {
				f = g
			}
		}
		t.Run(name, func(t *testing.T) {
			script := filepath.Join(t.TempDir(), "walk.py")
			if err := os.WriteFile(script, []byte(walkFramesPy), 0o600); err != nil {
				t.Fatal(err)
			}
			out := runGDB(t, f, "echo ==BT==\\n", "bt", "echo ==WALK==\\n", "source "+script)
			btOut, walkOut, _ := strings.Cut(out, "==WALK==")
			_, btOut, _ = strings.Cut(btOut, "==BT==")
			walks := parseWalks(walkOut)

			k := loadFixtureKernel(t, f)
			checked, users, kthreads, throughRegs := 0, 0, 0, 0
			for _, task := range k.Tasks {
				w := walks[tidOf(task)]
				if w == nil {
					continue // a duplicate pid gdb does not list
				}
				own, err := k.Backtrace(task)
				if err != nil || len(own) == 0 {
					// The project's unwinder stopped early too: nothing
					// to hold gdb to.
					t.Logf("pid %d %s: own unwind %v", task.PID, task.Comm, err)
					continue
				}
				if name, off, ok := k.Syms.Lookup(own[0].PC); ok && off == 0 && len(own) > 1 && w.lastPC == own[0].PC {
					// A CPU stopped on the first instruction of entry code
					// that ORC marks undefined (error_entry): the project's
					// unwinder knows the call just pushed the return
					// address; gdb ended there (seen on one qemu57
					// generation) while the server gave the unwind
					// object's .text address as its section address,
					// which gdb adds to every address of the object: its
					// rules started one byte late. Now 0; still logged,
					// not failed, until a generation shows it gone.
					t.Logf("pid %d %s: gdb ends on the first instruction of %s; the ORC unwinder goes on %d frames", task.PID, task.Comm, name, len(own)-1)
					continue
				}
				checked++
				last := own[len(own)-1]
				if w.stop != "outermost" {
					t.Errorf("pid %d %s: gdb's backtrace stops with %q, not at the outermost frame", task.PID, task.Comm, w.stop)
				}
				if w.unnamed > 0 {
					t.Errorf("pid %d %s: %d frames without a function before the last", task.PID, task.Comm, w.unnamed)
				}
				switch {
				case last.UserMode:
					// Exactly one frame past the pt_regs: the user RIP.
					users++
					rip, _ := last.Regs.Get(amd64.RIP)
					if w.lastPC != rip {
						t.Errorf("pid %d %s: gdb's last frame is at 0x%x, the user RIP in pt_regs is 0x%x", task.PID, task.Comm, w.lastPC, rip)
					}
					if len(own) == 1 {
						// The CPU itself was in user mode (a hypervisor
						// dump): no pt_regs frame, the one frame is it.
						break
					}
					if n := len(w.afterSigs); n == 0 || w.afterSigs[n-1] != rip {
						t.Errorf("pid %d %s: the user frame does not follow the pt_regs frame: %x", task.PID, task.Comm, w.afterSigs)
					}
				case task.MM == 0 && task.PID > 0 && task.PID != 1:
					kthreads++
					if !strings.HasPrefix(w.lastName, "ret_from_fork") {
						t.Errorf("kernel thread pid %d %s ends at %s (0x%x), not ret_from_fork", task.PID, task.Comm, w.lastName, w.lastPC)
					}
				default:
					if w.lastPC != last.PC {
						t.Errorf("pid %d %s: gdb ends at %s 0x%x, the ORC unwinder at 0x%x", task.PID, task.Comm, w.lastName, w.lastPC, last.PC)
					}
				}
				// One signal frame per pt_regs frame the ORC unwinder
				// crossed, each in entry code.
				regsFrames := 0
				for _, fr := range own[1:] {
					if fr.Kind == unwind.KindException || fr.Kind == unwind.KindIRET {
						regsFrames++
					}
				}
				if len(w.sigNames) != regsFrames {
					t.Errorf("pid %d %s: %d signal frames %v, the ORC unwinder crossed %d pt_regs", task.PID, task.Comm, len(w.sigNames), w.sigNames, regsFrames)
				}
				for _, n := range w.sigNames {
					if !isEntryCode(n) {
						t.Errorf("pid %d %s: signal frame in %s, not in entry code", task.PID, task.Comm, n)
					}
				}
				// Through every kernel-mode pt_regs frame into the
				// interrupted function, as the kernel's own trace does.
				for _, fr := range own[1:] {
					if (fr.Kind == unwind.KindException || fr.Kind == unwind.KindIRET) && !fr.UserMode {
						throughRegs++
						found := false
						for _, pc := range w.afterSigs {
							found = found || pc == fr.PC
						}
						if !found {
							t.Errorf("pid %d %s: gdb does not unwind through the pt_regs frame into 0x%x (%s)", task.PID, task.Comm, fr.PC, k.SymbolName(fr.PC))
						}
					}
				}
			}
			t.Logf("%d tasks compared: %d from user space, %d kernel threads, %d kernel-mode pt_regs frames", checked, users, kthreads, throughRegs)
			if checked < len(k.Tasks)/2 || (f.kdump && users == 0) || kthreads == 0 {
				t.Fatalf("too few tasks compared (%d of %d, %d from user space, %d kernel threads)", checked, len(k.Tasks), users, kthreads)
			}
			// The panicking task's bt in the CLI: no "??" frame but its
			// last, which is the user RIP.
			if f.kdump && f.scenario() == "oom" {
				lines := regexp.MustCompile(`(?m)^#\d+ .*$`).FindAllString(btOut, -1)
				for i, l := range lines {
					if strings.Contains(l, " in ?? ()") && i != len(lines)-1 {
						t.Errorf("bt frame %q is not the last", l)
					}
				}
				if n := len(lines); n < 5 || !strings.Contains(lines[n-2], "<signal handler called>") || !strings.Contains(lines[n-1], " in ?? ()") {
					t.Errorf("the panicking task's bt does not end with its pt_regs and user frame:\n%s", btOut)
				}
			}
		})
	}
}

// loadFixtureKernel opens a fixture's first dump with the project's model.
func loadFixtureKernel(t *testing.T, f gdbFixture) *kernel.Kernel {
	t.Helper()
	d, err := vmcore.Open(f.paths(t)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	v, err := symbols.Open(f.vmlinux(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	k, err := kernel.Load(d, v)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
