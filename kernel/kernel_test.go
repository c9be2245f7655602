package kernel

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

func loadFixture(t testing.TB, files ...string) *Kernel {
	t.Helper()
	return loadIn(t, fixtures.Sets(t)[0], files...)
}

func loadIn(t testing.TB, set fixtures.Set, files ...string) *Kernel {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, set.Path(t, strings.Split(f, "/")...))
	}
	return loadPaths(t, set, paths...)
}

// loadPaths builds the model of the dump files at paths (a rewritten copy
// of a fixture, say) with the set's vmlinux.
func loadPaths(t testing.TB, set fixtures.Set, paths ...string) *Kernel {
	t.Helper()
	d, err := vmcore.Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	v, err := symbols.Open(set.Path(t, "kernel", "vmlinux"))
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

func (k *Kernel) symbolAt(addr uint64) string {
	name, _, _ := k.Vmlinux.SymbolAt(addr - k.KASLR)
	return name
}

func TestModel(t *testing.T) {
	set61, set612, set418 := fixtures.SetsWith418(t)[0], fixtures.SetsWith418(t)[1], fixtures.SetsWith418(t)[2]
	for _, c := range []struct {
		set   fixtures.Set
		files []string
		kdump bool
	}{
		{set61, []string{"oom/vmcore.lzo"}, true},
		{set61, []string{"oom/vmcore.split.1", "oom/vmcore.split.2"}, true},
		{set61, []string{"qemu57/vmcore.elf"}, false},
		{set61, []string{"qemu57/vmcore.kdump-zlib"}, false},
		// 6.12's -d 31 files lose in-use slab pages (makedumpfile 1.7.2
		// predates 6.10's slab page type), so its task list is whole
		// only in the ELF.
		{set612, []string{"oom/vmcore.elf"}, true},
		// 4.18: types from the vmlinux's DWARF alone.
		{set418, []string{"oom/vmcore.elf"}, true},
		{set418, []string{"oom/vmcore.lzo"}, true},
		{set418, []string{"oom/vmcore.split.1", "oom/vmcore.split.2"}, true},
	} {
		t.Run(c.set.Name+"/"+c.files[0], func(t *testing.T) {
			k := loadIn(t, c.set, c.files...)
			if len(k.Warnings()) > 0 {
				t.Errorf("warnings: %q", k.Warnings())
			}
			// nr_threads counts every task but the idle ones.
			a, err := k.Symbol("nr_threads")
			if err != nil {
				t.Fatal(err)
			}
			n, err := k.readU32(a)
			if err != nil {
				t.Fatal(err)
			}
			if len(k.Tasks) != int(n)+len(k.CPUs) {
				t.Fatalf("%d tasks, but nr_threads %d + %d CPUs", len(k.Tasks), n, len(k.CPUs))
			}
			for i, cpu := range k.CPUs {
				if k.Tasks[i] != cpu.Curr || cpu.Curr.OnCPU != cpu {
					t.Fatalf("task %d is not CPU %d's", i, i)
				}
				if cpu.Regs == nil {
					t.Fatalf("CPU %d has no registers", i)
				}
				if cpu.GSBaseValid == c.kdump {
					t.Errorf("CPU %d: gs_base valid %v in a kdump=%v dump", i, cpu.GSBaseValid, c.kdump)
				}
				if cpu.Idle == nil || cpu.Idle.PID != 0 || !cpu.Idle.IsIdle {
					t.Fatalf("CPU %d idle task %+v", i, cpu.Idle)
				}
			}
			if c.kdump {
				if k.PanicCPU < 0 {
					t.Fatal("no panic CPU in a kdump")
				}
				p := k.CPUs[k.PanicCPU].Curr
				if !p.Panic || p.Comm != "stress" {
					t.Fatalf("panicking task %+v", p)
				}
				// The kdump's NT_PRSTATUS notes name the same pid.
				found := false
				for _, n := range k.Dump.PRStatus() {
					found = found || n.PID == p.PID
				}
				if !found {
					t.Fatalf("pid %d is in no NT_PRSTATUS note", p.PID)
				}
				r, _ := k.TaskRegisters(p)
				if fn := k.symbolAt(r.Value(amd64.RIP)); fn != "__crash_kexec" && fn != "crash_setup_regs" {
					t.Errorf("panicking CPU stopped in %q, want the kdump entry", fn)
				}
			} else if k.PanicCPU != -1 {
				t.Errorf("a hypervisor dump of a running guest has panic CPU %d", k.PanicCPU)
			}
			// Every sleeping task resumes inside the scheduler, with its
			// stack pointer inside its own kernel stack.
			sleeping := 0
			for _, task := range k.Tasks {
				if task.OnCPU != nil {
					continue
				}
				r, err := k.TaskRegisters(task)
				if err != nil {
					t.Fatalf("pid %d: %v", task.PID, err)
				}
				fn := k.symbolAt(r.Value(amd64.RIP))
				if fn != "__schedule" && fn != "schedule" && !strings.HasPrefix(fn, "ret_from_fork") {
					t.Errorf("pid %d %s resumes in %q", task.PID, task.Comm, fn)
				}
				if !task.IsIdle && (r.Value(amd64.RSP) < task.Stack || r.Value(amd64.RSP) >= task.Stack+4*4096*2) {
					t.Errorf("pid %d rsp 0x%x outside its stack 0x%x", task.PID, r.Value(amd64.RSP), task.Stack)
				}
				for _, reg := range []amd64.Reg{amd64.RAX, amd64.RCX, amd64.EFLAGS, amd64.CS} {
					if r.Has(reg) {
						t.Errorf("pid %d: %v claimed known for a sleeping task", task.PID, reg)
					}
				}
				sleeping++
			}
			if sleeping < 20 {
				t.Fatalf("only %d sleeping tasks", sleeping)
			}
			// User memory through mm->pgd. A stress worker caught in user
			// mode is inside memset(chunk, pat, ...): the byte before RDI is
			// the fill byte in AL.
			userChecked := 0
			// THREAD_SIZE: the linker script brackets the boot task's stack
			// (__start_init_task/__end_init_task before 6.6, then
			// __start_init_stack/__end_init_stack).
			startInit, _, err1 := k.Vmlinux.Symbol("__start_init_task")
			endInit, _, err2 := k.Vmlinux.Symbol("__end_init_task")
			if err1 != nil || err2 != nil {
				startInit, _, err1 = k.Vmlinux.Symbol("__start_init_stack")
				endInit, _, err2 = k.Vmlinux.Symbol("__end_init_stack")
			}
			threadSize := endInit - startInit
			if err1 != nil || err2 != nil || threadSize == 0 || threadSize > 1<<20 {
				t.Fatalf("THREAD_SIZE: %v %v %d", err1, err2, threadSize)
			}
			ptRegsSize, _ := k.Types.Sizeof("pt_regs")
			for _, cpu := range k.CPUs {
				task := cpu.Curr
				r := cpu.Regs
				if task.Comm != "stress" {
					continue
				}
				fromEntry := r.Value(amd64.CS)&3 != 3
				if fromEntry {
					// In the kernel (an interrupt, a fault): the user
					// registers are the pt_regs at the top of its stack.
					u, err := k.Unwinder()
					if err != nil {
						t.Fatal(err)
					}
					base := task.Stack + threadSize - ptRegsSize
					var regs amd64.Regs
					for _, reg := range []amd64.Reg{amd64.CS, amd64.RDI, amd64.RAX} {
						off, ok := u.PtRegs.Offset(reg)
						if !ok {
							t.Fatalf("pt_regs layout lacks %v", reg)
						}
						v, err := k.ReadU64(base + off)
						if err != nil {
							t.Fatal(err)
						}
						regs.Set(reg, v)
					}
					if regs.Value(amd64.CS)&3 != 3 {
						continue
					}
					r = &regs
				}
				buf := make([]byte, 1)
				_, err := k.ReadMemory(task, r.Value(amd64.RDI)-1, buf)
				if errors.Is(err, vmcore.ErrExcluded) {
					continue // makedumpfile -d 31 drops user pages
				}
				if fromEntry && errors.Is(err, vmcore.ErrNotMapped) {
					continue // in the kernel to fault in this very page (4.18's OOM)
				}
				if err != nil {
					t.Fatalf("pid %d user memory at 0x%x: %v", task.PID, r.Value(amd64.RDI)-1, err)
				}
				if buf[0] != byte(r.Value(amd64.RAX)) {
					t.Fatalf("pid %d: byte before rdi 0x%x is 0x%x, memset is writing 0x%x", task.PID, r.Value(amd64.RDI), buf[0], byte(r.Value(amd64.RAX)))
				}
				userChecked++
			}
			if !c.kdump && userChecked == 0 {
				t.Fatal("no stress worker caught in user mode in the hypervisor dump")
			}
		})
	}
}

func TestWrongVmlinuxRefused(t *testing.T) {
	d, err := vmcore.Open(fixtures.Path(t, "oom", "vmcore.lzo"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vi, _ := d.VMCOREINFO()
	orig := vi.BuildID
	vi.BuildID = strings.Repeat("0", 40)
	defer func() { vi.BuildID = orig }()
	v, err := symbols.Open(fixtures.Path(t, "kernel", "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := Load(d, v); err == nil || !strings.Contains(err.Error(), "is not the kernel of this dump: it is "+vi.OSRelease) {
		t.Fatalf("a vmlinux with another build id was accepted: %v", err)
	}
}

// Every module's build id read from memory is the one in its .ko file (the
// modules of the fixture guests come from the kernel package, and
// vmcore_crash.ko is built by the fixture recipe).
func TestModuleBuildIDs(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			k := loadIn(t, set, "modcrash/vmcore.elf")
			mods, err := k.Modules()
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]string{}
			filepath.WalkDir(set.Path(t, "kernel", "modules"), func(p string, d fs.DirEntry, err error) error {
				for _, ext := range []string{".ko", ".ko.xz"} {
					if err == nil && strings.HasSuffix(p, ext) {
						files[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ext), "-", "_")] = p
					}
				}
				return nil
			})
			files["vmcore_crash"] = set.Path(t, "modcrash", "vmcore_crash.ko")
			checked := 0
			for _, m := range mods {
				p, ok := files[m.Name]
				if !ok {
					continue
				}
				var r io.ReaderAt
				if strings.HasSuffix(p, ".xz") {
					out, err := exec.Command("xz", "-dc", p).Output()
					if err != nil {
						t.Fatalf("xz -dc %s: %v", p, err)
					}
					r = bytes.NewReader(out)
				} else {
					f, err := os.Open(p)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					r = f
				}
				want, err := symbols.ELFBuildID(r)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if m.BuildID != want {
					t.Errorf("module %s: build id from memory %q, %s has %s", m.Name, m.BuildID, p, want)
				}
				checked++
			}
			if checked < 2 {
				t.Fatalf("only %d modules had a .ko to compare with (of %d loaded)", checked, len(mods))
			}
			t.Logf("%d modules' build ids match their files", checked)
		})
	}
}
