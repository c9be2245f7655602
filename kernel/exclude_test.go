package kernel

import (
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// taskPages lists the physical pages holding a task's task_struct.
func taskPages(t *testing.T, k *Kernel, task *Task) []uint64 {
	t.Helper()
	size, err := k.Types.Sizeof("task_struct")
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
	for _, set := range fixtures.SetsWith418(t) {
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
				k := loadPaths(t, set, path)
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

// pidNodes lists the xa_node addresses of init_pid_ns's pid IDR, root first.
func pidNodes(t *testing.T, k *Kernel) []uint64 {
	t.Helper()
	b := k.Types
	ns, err := k.Symbol("init_pid_ns")
	if err != nil {
		t.Fatal(err)
	}
	idrOff, _ := b.Offset("pid_namespace", "idr")
	rtOff, _ := b.Offset("idr", "idr_rt")
	headOff, _ := b.Offset("xarray", "xa_head")
	slotsOff, _ := b.Offset("xa_node", "slots")
	nslots, _ := b.ArrayLen("xa_node", "slots")
	head, err := k.ReadU64(ns + idrOff + rtOff + headOff)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []uint64
	var walk func(e uint64)
	walk = func(e uint64) {
		if e&3 != 2 || e <= 4096 {
			return
		}
		nodes = append(nodes, e-2)
		for i := uint64(0); i < nslots; i++ {
			c, err := k.ReadU64(e - 2 + slotsOff + 8*i)
			if err != nil {
				t.Fatal(err)
			}
			walk(c)
		}
	}
	walk(head)
	return nodes
}

// A pid-IDR node the dump lacks loses only the pids below it: the walk
// reports it and finds the tasks under the other nodes.
// On 6.1 and on 4.18 (RHEL 8's backported xarray under the IDR).
func TestPIDWalkSkipsUnreadableNode(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	for _, set := range []fixtures.Set{sets[0], sets[2]} {
		t.Run(set.Name, func(t *testing.T) { testPIDWalkSkipsUnreadableNode(t, set) })
	}
}

func testPIDWalkSkipsUnreadableNode(t *testing.T, set fixtures.Set) {
	full := loadIn(t, set, "oom/vmcore.lzo")
	nodes := pidNodes(t, full)
	ps := full.Dump.PageSize()
	pageOf := func(va uint64) uint64 {
		tr, err := full.VM.Translate(va)
		if err != nil {
			t.Fatal(err)
		}
		return tr.Phys / ps
	}
	// A leaf on a page of its own (not the root's, not every leaf's),
	// and not the last one the walk visits (pidNodes is in walk order), so
	// that the walk has pids to find past it.
	var drop uint64
	var pfn uint64
	if len(nodes) < 3 {
		t.Fatalf("the pid IDR has %d nodes; need a root and two more", len(nodes))
	}
	for _, n := range nodes[1 : len(nodes)-1] {
		p := pageOf(n)
		shared := p == pageOf(nodes[0])
		others := 0
		for _, m := range nodes[1:] {
			if pageOf(m) != p {
				others++
			}
		}
		if !shared && others > 0 {
			drop, pfn = n, p
			break
		}
	}
	if drop == 0 {
		t.Fatalf("the pid IDR's %d nodes share their pages; nothing to exclude", len(nodes))
	}
	path := fixtures.ExcludePages(t, set.Path(t, "oom", "vmcore.lzo"), []uint64{pfn})
	k := loadPaths(t, set, path)
	inFull := map[uint64]bool{}
	for _, task := range full.Tasks {
		inFull[task.Addr] = true
	}
	var got []*Task
	n, err := k.tasksFromPIDs(func(task *Task) { got = append(got, task) })
	if err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Errorf("the unreadable node 0x%x is not reported: %v", drop, err)
	}
	if n == 0 || n != len(got) {
		t.Fatalf("%d tasks found past the unreadable node (%d added)", n, len(got))
	}
	for _, task := range got {
		if !inFull[task.Addr] {
			t.Errorf("pid %d at 0x%x is no task of the dump", task.PID, task.Addr)
		}
	}
	// The tasks lost are those under the one node: a run of consecutive
	// pids in the complete walk, with the walk going on past it where
	// the complete one did.
	var order []*Task
	if _, err := full.tasksFromPIDs(func(task *Task) { order = append(order, task) }); err != nil {
		t.Fatal(err)
	}
	found := map[uint64]bool{}
	for _, task := range got {
		found[task.Addr] = true
	}
	first, last := -1, -1
	for i, task := range order {
		if !found[task.Addr] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Errorf("no task lost with node 0x%x excluded", drop)
	}
	for i := first; first >= 0 && i <= last; i++ {
		if found[order[i].Addr] {
			t.Errorf("tasks lost around pid %d are not one run of the walk (pids %d..%d)", order[i].PID, order[first].PID, order[last].PID)
			break
		}
	}
	if last == len(order)-1 {
		t.Errorf("nothing found past the excluded node (pids %d..%d lost): the walk stopped there", order[first].PID, order[last].PID)
	}
	t.Logf("%d IDR nodes, 0x%x excluded, %d tasks still found, %d lost (pids %d..%d)", len(nodes), drop, n, len(order)-n, order[max(first, 0)].PID, order[max(last, 0)].PID)
}
