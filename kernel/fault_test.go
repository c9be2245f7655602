package kernel

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// copyFile copies src to a temporary file (read-only fixtures stay
// untouched: the dump is evidence).
func copyFile(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
	return dst
}

// fileOffset maps a physical address to its offset in an ELF vmcore.
func fileOffset(t *testing.T, d *vmcore.Dump, phys uint64) int64 {
	for _, g := range d.LoadSegments() {
		if phys >= g.PAddr && phys < g.PAddr+g.FileSz {
			return g.Offset + int64(phys-g.PAddr)
		}
	}
	t.Fatalf("physical 0x%x is in no PT_LOAD", phys)
	return 0
}

// A task list corrupted into a cycle (a task's tasks.next pointing back
// at an earlier task) ends the walk with a warning, not a hang; the tasks
// beyond are found by pid.
func TestTaskListCycle(t *testing.T) {
	path := copyFile(t, fixtures.Path(t, "oom", "vmcore.elf"))
	good := func() *Kernel {
		d, err := vmcore.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		v, err := symbols.Open(fixtures.Path(t, "kernel", "vmlinux"))
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		k, err := Load(d, v)
		if err != nil {
			t.Fatal(err)
		}
		// The 10th task's tasks.next now points at the 3rd task's list node.
		var leaders []*Task
		for _, task := range k.Tasks {
			if task.PID == task.TGID && task.PID > 0 && task.OnCPU == nil {
				leaders = append(leaders, task)
			}
		}
		b, a := leaders[9], leaders[2]
		tr, err := k.VM.Translate(b.Addr + k.off.taskTasks)
		if err != nil {
			t.Fatal(err)
		}
		off := fileOffset(t, d, tr.Phys)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], a.Addr+k.off.taskTasks)
		if _, err := f.WriteAt(buf[:], off); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return k
	}()
	d, err := vmcore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	v, _ := symbols.Open(fixtures.Path(t, "kernel", "vmlinux"))
	defer v.Close()
	start := time.Now()
	k, err := Load(d, v)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Minute {
		t.Fatal("the walk took too long")
	}
	// The cycle is reported, and the pid IDR, which does not depend on
	// the list, still finds every task.
	warned, recovered := false, false
	for _, w := range k.Warnings {
		warned = warned || strings.Contains(w, "cycle")
		recovered = recovered || strings.Contains(w, "more tasks found")
	}
	if !warned || !recovered || len(k.Tasks) != len(good.Tasks) {
		t.Fatalf("%d tasks (of %d), warnings %q", len(k.Tasks), len(good.Tasks), k.Warnings)
	}
}

// makedumpfile 1.7.2 drops some in-use slab pages of 6.12 at -d 31,
// task_structs among them, cutting the task list: the tasks beyond the cut
// are found walking the list backwards and through the pid IDR, so every
// task whose task_struct the dump holds is listed, and the cut is reported.
func TestTaskListCutRecoveredByPID(t *testing.T) {
	set := fixtures.Sets(t)[1]
	elf := loadIn(t, set, "oom/vmcore.elf")
	lzo := loadIn(t, set, "oom/vmcore.lzo")
	have := map[uint64]bool{}
	for _, task := range lzo.Tasks {
		have[task.Addr] = true
	}
	readable, missing := 0, 0
	buf := make([]byte, 8)
	for _, task := range elf.Tasks {
		if lzo.Read(buf, task.Addr) != nil {
			missing++
			continue
		}
		readable++
		if !have[task.Addr] {
			t.Errorf("pid %d %s is readable in the lzo dump but not listed", task.PID, task.Comm)
		}
	}
	cut, recovered := false, false
	for _, w := range lzo.Warnings {
		cut = cut || strings.Contains(w, "task list is cut")
		recovered = recovered || strings.Contains(w, "more tasks found")
	}
	if missing > 0 && (!cut || !recovered) {
		t.Errorf("%d task_structs excluded, warnings %q", missing, lzo.Warnings)
	}
	t.Logf("%d tasks in the ELF, %d readable in the lzo dump, %d listed", len(elf.Tasks), readable, len(lzo.Tasks))
}

// A page table that points back at itself (the top-level entry for the
// vmalloc area rewritten to the top-level table's own address) makes
// walks end at once with an error or a bounded translation; the rest of
// the kernel still reads.
func TestRealPageTableLoop(t *testing.T) {
	path := copyFile(t, fixtures.Path(t, "oom", "vmcore.elf"))
	d, err := vmcore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := d.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	root := k.Root()
	// A vmalloc'd task stack: its top-level entry is the one to loop.
	v, _ := symbols.Open(fixtures.Path(t, "kernel", "vmlinux"))
	defer v.Close()
	km, err := Load(d, v)
	if err != nil {
		t.Fatal(err)
	}
	var stack uint64
	for _, task := range km.Tasks {
		if task.PID > 2 && task.OnCPU == nil {
			stack = task.Stack
			break
		}
	}
	idx := (stack >> 39) & 511
	entryOff := fileOffset(t, d, root+idx*8)
	d.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], root|0x63) // present, rw, accessed, dirty
	f.WriteAt(b[:], entryOff)
	f.Close()

	d2, err := vmcore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	k2, err := d2.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for off := uint64(0); off < 64<<20; off += 1 << 20 {
		k2.Translate(stack + off) // must return, whatever it returns
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("walks of a looping page table took too long")
	}
	buf := make([]byte, 16)
	banner, _ := v.Address("linux_banner", km.KASLR)
	if _, err := k2.Read(buf, banner); err != nil || string(buf[:5]) != "Linux" {
		t.Fatalf("kernel text after the loop: %q %v", buf, err)
	}
}
