package kernel

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	for _, w := range k.Warnings() {
		warned = warned || strings.Contains(w, "cycle")
		recovered = recovered || strings.Contains(w, "more tasks found")
	}
	if !warned || !recovered || len(k.Tasks) != len(good.Tasks) {
		t.Fatalf("%d tasks (of %d), warnings %q", len(k.Tasks), len(good.Tasks), k.Warnings())
	}
}

// makedumpfile 1.7.2 drops some in-use slab pages of 6.12 at -d 31,
// task_structs among them, cutting the task list. The cut is reported,
// tasks beyond it are found walking the list backwards and through the
// pid IDR, and nothing is invented: every task listed is one the complete
// ELF dump has. (Tasks between two cuts whose struct pid is excluded too
// are out of reach; how many varies from one fixture generation to the
// next, so they are only logged.)
func TestTaskListCutRecoveredByPID(t *testing.T) {
	set := fixtures.Sets(t)[1]
	elf := loadIn(t, set, "oom/vmcore.elf")
	lzo := loadIn(t, set, "oom/vmcore.lzo")
	inELF := map[uint64]bool{}
	for _, task := range elf.Tasks {
		inELF[task.Addr] = true
	}
	for _, task := range lzo.Tasks {
		if !inELF[task.Addr] {
			t.Errorf("pid %d at 0x%x is listed but is no task of the complete dump", task.PID, task.Addr)
		}
	}
	have := map[uint64]bool{}
	for _, task := range lzo.Tasks {
		have[task.Addr] = true
	}
	readable, unreached := 0, 0
	buf := make([]byte, 8)
	for _, task := range elf.Tasks {
		if lzo.Read(buf, task.Addr) == nil {
			readable++
			if !have[task.Addr] {
				unreached++
			}
		}
	}
	cut := false
	recovered := -1
	re := regexp.MustCompile(`(\d+) more tasks found walking the task list backwards, (\d+) through the pid IDR`)
	for _, w := range lzo.Warnings() {
		cut = cut || strings.Contains(w, "task list is cut")
		if m := re.FindStringSubmatch(w); m != nil {
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			recovered = a + b
		}
	}
	if readable < len(elf.Tasks) && (!cut || recovered <= 0) {
		t.Errorf("task_structs excluded but no cut reported or nothing recovered: %q", lzo.Warnings())
	}
	t.Logf("%d tasks in the ELF, %d readable in the lzo dump, %d listed (%d recovered past the cut, %d out of reach)",
		len(elf.Tasks), readable, len(lzo.Tasks), recovered, unreached)
}
