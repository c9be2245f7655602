package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// scenarios are the fixture crashes whose guest printed PID 1's maps and
// fds: oom in every set, sysrq and modcrash where the set has them.
func scenarios(t *testing.T, set fixtures.Set) []string {
	out := []string{"oom"}
	for _, s := range []string{"sysrq", "modcrash"} {
		if _, err := os.Stat(filepath.Join(set.Dir, s, "vmcore.elf")); err == nil {
			out = append(out, s)
		}
	}
	return out
}

func taskByPID(t *testing.T, k *Kernel, pid int32) *Task {
	t.Helper()
	for _, task := range k.Tasks {
		if task.PID == pid && !task.IsIdle {
			return task
		}
	}
	t.Fatalf("no pid %d", pid)
	return nil
}

// consoleMaps is PID 1's /proc/1/maps from the console, less the
// [vsyscall] line: the gate area (get_gate_vma) is the kernel's, no VMA
// of the mm, and 4.18 prints it.
func consoleMaps(t *testing.T, set fixtures.Set, sc string) []fixtures.Mapping {
	var out []fixtures.Mapping
	for _, m := range fixtures.ConsoleMaps(t, set, sc) {
		if m.Name != "[vsyscall]" {
			out = append(out, m)
		}
	}
	return out
}

// fullAndFiltered are the dumps of a scenario: the ELF one holds all
// memory, where everything must be read; the makedumpfile -d 31 one may
// lack pages makedumpfile wrongly excluded (its 1.7.2 does not know
// 6.12's slab pages), and then must say so, never guess.
var fullAndFiltered = []string{"vmcore.elf", "vmcore.lzo"}

// unreadableOK says whether err is allowed for this dump: only the
// filtered dump may lack pages, and only with that reason.
func unreadableOK(dump string, err error) bool {
	return err != nil && dump == "vmcore.lzo" && strings.Contains(err.Error(), "excluded from the dump")
}

// TestVMAsMatchConsole: PID 1 (busybox sh) printed its /proc/1/maps just
// before the crash and then only waits, so the dump's VMAs are those
// lines: same ranges, permissions, offsets and names ([heap] may have
// grown since). The 4.18 set walks the mmap list, 6.1 and 6.12 the
// maple tree.
func TestVMAsMatchConsole(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		for _, sc := range scenarios(t, set) {
			for _, dump := range fullAndFiltered {
				t.Run(set.Name+"/"+sc+"/"+dump, func(t *testing.T) {
					want := consoleMaps(t, set, sc)
					k := loadIn(t, set, sc+"/"+dump)
					vmas, err := k.VMAs(taskByPID(t, k, 1))
					partial := unreadableOK(dump, err)
					if err != nil && !partial {
						t.Fatalf("VMAs: %v", err)
					}
					if partial {
						t.Logf("partial: %v", err)
					}
					if len(vmas) != len(want) && !(partial && len(vmas) < len(want)) {
						for _, v := range vmas {
							t.Logf("dump:    %x-%x %s %08x %s", v.Start, v.End, v.Perms(), v.PgOff*4096, v.Name)
						}
						for _, m := range want {
							t.Logf("console: %x-%x %s %08x %s", m.Start, m.End, m.Perms, m.Offset, m.Name)
						}
						t.Fatalf("%d VMAs in the dump, %d lines in /proc/1/maps", len(vmas), len(want))
					}
					byStart := map[uint64]fixtures.Mapping{}
					for _, m := range want {
						byStart[m.Start] = m
					}
					for i, v := range vmas {
						m, ok := byStart[v.Start]
						// show_map_vma prints an anonymous mapping's offset as 0.
						off := v.PgOff * 4096
						if v.File == 0 {
							off = 0
						}
						endOK := v.End == m.End || m.Name == "[heap]" && v.End > m.End
						// A file's path may need a dentry page the filtered
						// dump left out, even when every VMA was read.
						nameOK := v.Name == m.Name && v.NameErr == "" || v.Name == "" && unreadableOK(dump, errors.New(v.NameErr))
						if !ok || !endOK || v.Perms() != m.Perms || off != m.Offset || !nameOK {
							t.Errorf("VMA %d: dump %x-%x %s %x %q (%s), console %x-%x %s %x %q",
								i, v.Start, v.End, v.Perms(), off, v.Name, v.NameErr, m.Start, m.End, m.Perms, m.Offset, m.Name)
						}
					}
				})
			}
		}
	}
}

// TestFilesMatchConsole: PID 1's open descriptors in the dump are those
// `ls -l /proc/1/fd` printed before the crash, with the same targets;
// a path the filtered dump lacks is said to be unreadable.
func TestFilesMatchConsole(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		for _, sc := range scenarios(t, set) {
			for _, dump := range fullAndFiltered {
				t.Run(set.Name+"/"+sc+"/"+dump, func(t *testing.T) {
					want := fixtures.ConsoleFDs(t, set, sc)
					k := loadIn(t, set, sc+"/"+dump)
					ft, err := k.Files(taskByPID(t, k, 1))
					if err != nil && !unreadableOK(dump, err) {
						t.Fatalf("Files: %v", err)
					}
					excluded := func(why string) bool { return dump == "vmcore.lzo" && strings.Contains(why, "excluded from the dump") }
					if !(ft.Root == "/" && ft.RootErr == "" || ft.Root == "" && excluded(ft.RootErr)) ||
						!(ft.Cwd != "" && ft.CwdErr == "" || ft.Cwd == "" && excluded(ft.CwdErr)) {
						t.Errorf("root %q (%s), cwd %q (%s)", ft.Root, ft.RootErr, ft.Cwd, ft.CwdErr)
					}
					got := map[int]OpenFile{}
					for _, f := range ft.Files {
						got[f.FD] = f
					}
					if len(got) != len(want) && err == nil {
						t.Errorf("%d open files in the dump (%+v), %d in /proc/1/fd (%+v)", len(got), ft.Files, len(want), want)
					}
					for _, w := range want {
						f, ok := got[w.FD]
						switch {
						case !ok && err == nil:
							t.Errorf("fd %d -> %s: not open in the dump", w.FD, w.Target)
						case !ok:
						case f.Err != "" && f.Path == "" && excluded(f.Err):
							t.Logf("fd %d: %s", w.FD, f.Err)
						case f.Path != w.Target || f.Err != "":
							t.Errorf("fd %d: dump %q (%s), console %q", w.FD, f.Path, f.Err, w.Target)
						case f.Dentry == 0 || f.Inode == 0 || FileType(f.Mode) == "":
							t.Errorf("fd %d: dentry %#x inode %#x mode %o", w.FD, f.Dentry, f.Inode, f.Mode)
						}
					}
				})
			}
		}
	}
}

// TestPanicTaskUserRegsInVMAs: the panicking task's user-mode rip lies in
// an executable mapping of its own, its user rsp in [stack] or another
// writable mapping.
func TestPanicTaskUserRegsInVMAs(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			k := loadIn(t, set, "oom/vmcore.elf")
			var task *Task
			for _, tk := range k.Tasks {
				if tk.Panic {
					task = tk
				}
			}
			if task == nil {
				t.Fatal("no panicking task")
			}
			frames, _ := k.Backtrace(task)
			if len(frames) == 0 || !frames[len(frames)-1].UserMode {
				t.Fatalf("pid %d %s: backtrace does not end in user mode (%d frames)", task.PID, task.Comm, len(frames))
			}
			regs := frames[len(frames)-1].Regs
			rip, ok1 := regs.Get(amd64.RIP)
			rsp, ok2 := regs.Get(amd64.RSP)
			if !ok1 || !ok2 {
				t.Fatal("user rip or rsp unknown")
			}
			vmas, err := k.VMAs(task)
			if err != nil {
				t.Fatalf("VMAs: %v", err)
			}
			find := func(a uint64) *VMA {
				for i := range vmas {
					if vmas[i].Start <= a && a < vmas[i].End {
						return &vmas[i]
					}
				}
				return nil
			}
			if v := find(rip); v == nil || v.Flags&VM_EXEC == 0 {
				t.Errorf("pid %d %s: user rip %#x not in an executable VMA (%+v)", task.PID, task.Comm, rip, v)
			}
			if v := find(rsp); v == nil || (v.Name != "[stack]" && v.Flags&VM_WRITE == 0) {
				t.Errorf("pid %d %s: user rsp %#x not in [stack] or a writable VMA (%+v)", task.PID, task.Comm, rsp, v)
			}
		})
	}
}

// TestVMAsScale: the scale guest's one process of thousands of threads,
// each with its own stack mapping, has tens of thousands of VMAs: a
// maple tree of several levels on 6.1, a long list on 4.18. Every one is
// found (as many as mm->map_count says, else VMAs errs), in order and
// without overlap, at least one per thread.
func TestVMAsScale(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	for _, set := range []fixtures.Set{sets[0], sets[2]} {
		t.Run(set.Name, func(t *testing.T) {
			k := loadIn(t, set, "scale/vmcore.lzo")
			threads := map[uint64]int{}
			var big *Task
			for _, task := range k.Tasks {
				if task.MM == 0 {
					continue
				}
				threads[task.MM]++
				if big == nil || threads[task.MM] > threads[big.MM] {
					big = task
				}
			}
			if big == nil || threads[big.MM] < 1000 {
				t.Fatalf("no process of 1000 threads or more")
			}
			vmas, err := k.VMAs(big)
			if err != nil {
				t.Fatalf("pid %d: %v", big.PID, err)
			}
			if len(vmas) < threads[big.MM] {
				t.Errorf("pid %d: %d VMAs for %d threads", big.PID, len(vmas), threads[big.MM])
			}
			prevEnd := uint64(0)
			for i, v := range vmas {
				if v.End <= v.Start || v.Start < prevEnd {
					t.Fatalf("VMA %d %x-%x after one ending at %x", i, v.Start, v.End, prevEnd)
				}
				prevEnd = v.End
			}
			t.Logf("pid %d %s: %d threads, %d VMAs", big.PID, big.Comm, threads[big.MM], len(vmas))
		})
	}
}
