package kernel

import (
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// taskPages lists the physical pages holding a task's task_struct.
func taskPages(t *testing.T, k *Kernel, task *Task) []uint64 {
	t.Helper()
	size, err := k.BTF.Sizeof("task_struct")
	if err != nil {
		t.Fatal(err)
	}
	ps := k.Dump.PageSize()
	var pfns []uint64
	for va := task.Addr &^ (ps - 1); va < task.Addr+size; va += ps {
		tr, err := k.VM.Translate(va)
		if err != nil {
			t.Fatal(err)
		}
		pfns = append(pfns, tr.Phys/ps)
	}
	return pfns
}

func panicTask(k *Kernel) *Task {
	for _, task := range k.Tasks {
		if task.Panic {
			return task
		}
	}
	return nil
}

// makedumpfile 1.7.2 at -d 31 on 6.12 was seen to drop the page of the
// running, panicking task's task_struct. The task must stay a thread: pid
// and registers from its CPU's note, its command from the kernel's own
// log line, its stack unwound as in the complete dump, and it is still
// the panicking task. Each fixture's lzo dump is rewritten with exactly
// those pages excluded, so this holds whatever the generation dropped.
func TestRunningTaskUnreadable(t *testing.T) {
	for _, set := range fixtures.Sets(t) {
		for _, scenario := range []string{"oom", "modcrash"} {
			t.Run(set.Name+"/"+scenario, func(t *testing.T) {
				full := loadIn(t, set, scenario+"/vmcore.elf")
				want := panicTask(full)
				if want == nil || want.OnCPU == nil {
					t.Fatal("the complete dump has no panicking task on a CPU")
				}
				wantFrames, err := full.Backtrace(want)
				if err != nil || len(wantFrames) < 3 {
					t.Fatalf("complete dump: %d frames, %v", len(wantFrames), err)
				}
				path := fixtures.ExcludePages(t, set.Path(t, scenario, "vmcore.lzo"), taskPages(t, full, want))
				d, err := vmcore.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				v, err := symbols.Open(set.Path(t, "kernel", "vmlinux"))
				if err != nil {
					t.Fatal(err)
				}
				defer v.Close()
				k, err := Load(d, v)
				if err != nil {
					t.Fatal(err)
				}
				if err := k.Read(make([]byte, 8), want.Addr); err == nil {
					t.Fatal("the rewritten dump still has the task_struct")
				}
				got := panicTask(k)
				if got == nil {
					t.Fatalf("no panicking task; warnings %q", k.Warnings())
				}
				if got.PID != want.PID || got.OnCPU == nil || got.OnCPU.ID != want.OnCPU.ID || got.Addr != want.Addr {
					t.Fatalf("panicking task pid %d cpu %v at 0x%x, want pid %d cpu %d at 0x%x", got.PID, got.OnCPU, got.Addr, want.PID, want.OnCPU.ID, want.Addr)
				}
				if got.Unreadable == "" || got.State != 'R' {
					t.Errorf("unreadable %q, state %c", got.Unreadable, got.State)
				}
				if got.Comm != want.Comm || !strings.HasPrefix(got.CommSource, "log: ") {
					t.Errorf("comm %q from %q, want %q from the log", got.Comm, got.CommSource, want.Comm)
				}
				// Running tasks come first, in CPU order.
				for _, before := range k.Tasks {
					if before == got {
						break
					}
					if before.OnCPU == nil || before.OnCPU.ID >= got.OnCPU.ID {
						t.Errorf("pid %d is listed before the panicking task", before.PID)
					}
				}
				frames, err := k.Backtrace(got)
				if len(frames) != len(wantFrames) {
					t.Fatalf("%d frames (%v), want %d", len(frames), err, len(wantFrames))
				}
				for i := range frames {
					if frames[i].PC != wantFrames[i].PC || frames[i].SP != wantFrames[i].SP {
						t.Errorf("frame %d: pc 0x%x sp 0x%x, want pc 0x%x sp 0x%x", i, frames[i].PC, frames[i].SP, wantFrames[i].PC, wantFrames[i].SP)
					}
				}
				// Said once, with the reason.
				said := false
				for _, w := range k.Warnings() {
					said = said || strings.Contains(w, "shown from the CPU's saved pid and registers")
				}
				if !said {
					t.Errorf("not reported: %q", k.Warnings())
				}
				if _, err := k.ReadMemory(got, 0x400000, make([]byte, 8)); err == nil || !strings.Contains(err.Error(), "unknown") {
					t.Errorf("user read of an unreadable task: %v", err)
				}
			})
		}
	}
}
