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
// at an earlier task) ends the walk with a warning, not a hang; what was
// read is still served.
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
	warned := false
	for _, w := range k.Warnings {
		warned = warned || strings.Contains(w, "cycle")
	}
	if !warned || len(k.Tasks) >= len(good.Tasks) || len(k.Tasks) < 10 {
		t.Fatalf("%d tasks (of %d), warnings %q", len(k.Tasks), len(good.Tasks), k.Warnings)
	}
}
