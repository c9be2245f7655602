package kernel

import (
	"errors"
	"fmt"
)

// RunQueue is one CPU's run queue: what it runs and what waits.
type RunQueue struct {
	CPU     int
	Addr    uint64 // struct rq
	Curr    *Task
	RTArray uint64 // &rq->rt.active
	RT      []QueuedTask
	CFSRoot uint64 // &rq->cfs.tasks_timeline
	CFS     []QueuedTask
}

// QueuedTask is a runnable task waiting in a run queue.
type QueuedTask struct {
	Prio int32
	Task *Task
	// Group is the task group's cfs_rq the task waits in, 0 for the
	// CPU's root cfs_rq.
	Group uint64
}

// maxQueued bounds the tasks walked in one queue (a cycle in a damaged
// tree or list must end).
const maxQueued = 1 << 16

// RunQueues reads every CPU's run queue: the CFS red-black tree in order
// (into task groups' queues), and the RT priority lists.
func (k *Kernel) RunQueues() ([]RunQueue, error) {
	b := k.Types
	off := func(s, m string) uint64 {
		v, err := b.Offset(s, m)
		if err != nil {
			k.warn("runq: %v", err)
		}
		return v
	}
	var errs []error
	need := func(s, m string) uint64 {
		v, err := b.Offset(s, m)
		errs = append(errs, err)
		return v
	}
	rqCFS, rqRT, rqCurr := need("rq", "cfs"), need("rq", "rt"), need("rq", "curr")
	timeline := need("cfs_rq", "tasks_timeline")
	rtActive, rtQueue := need("rt_rq", "active"), need("rt_prio_array", "queue")
	nQueue, err := b.ArrayLen("rt_prio_array", "queue")
	errs = append(errs, err)
	runNode, seMyQ := need("sched_entity", "run_node"), off("sched_entity", "my_q")
	rbLeft, rbRight := need("rb_node", "rb_left"), need("rb_node", "rb_right")
	taskSE, taskRT, taskPrio := need("task_struct", "se"), need("task_struct", "rt"), need("task_struct", "prio")
	rtRunList := need("sched_rt_entity", "run_list")
	listNext := need("list_head", "next")
	listSize, err := b.Sizeof("list_head")
	errs = append(errs, err)
	_, hasMyQ := b.Offset("sched_entity", "my_q")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if nQueue == 0 || nQueue > 1024 {
		return nil, fmt.Errorf("rt_prio_array.queue has %d lists", nQueue)
	}
	readTask := func(addr uint64) *Task {
		if t := k.taskAt(addr); t != nil {
			return t
		}
		t, err := k.readTask(addr)
		if err != nil {
			return &Task{Addr: addr, PID: -1, Unreadable: err.Error()}
		}
		return t
	}
	prio := func(task uint64) int32 {
		v, _ := k.readU32(task + taskPrio)
		return int32(v)
	}
	var out []RunQueue
	for _, c := range k.CPUs {
		rq, err := k.PerCPU("runqueues", c.ID)
		if err != nil {
			return nil, err
		}
		q := RunQueue{CPU: c.ID, Addr: rq, RTArray: rq + rqRT + rtActive, CFSRoot: rq + rqCFS + timeline}
		if curr, err := k.ReadU64(rq + rqCurr); err == nil && curr != 0 {
			q.Curr = readTask(curr)
		}
		// CFS: in-order walk of each cfs_rq's tree; a group entity's my_q
		// is walked where it sits.
		n := 0
		var walkRoot func(cfsRoot, group uint64, depth int) error
		var walk func(node, group uint64, depth int) error
		walk = func(node, group uint64, depth int) error {
			if node == 0 {
				return nil
			}
			if n++; n > maxQueued || depth > 64 {
				return fmt.Errorf("CPU %d: CFS tree deeper or larger than a run queue can be", c.ID)
			}
			left, err1 := k.ReadU64(node + rbLeft)
			right, err2 := k.ReadU64(node + rbRight)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("CPU %d: rb_node %#x: %w", c.ID, node, err)
			}
			if err := walk(left, group, depth+1); err != nil {
				return err
			}
			se := node - runNode
			var myQ uint64
			if hasMyQ == nil {
				myQ, _ = k.ReadU64(se + seMyQ)
			}
			if myQ != 0 {
				if err := walkRoot(myQ+timeline, myQ, depth+1); err != nil {
					return err
				}
			} else {
				task := se - taskSE
				q.CFS = append(q.CFS, QueuedTask{Prio: prio(task), Task: readTask(task), Group: group})
			}
			return walk(right, group, depth+1)
		}
		walkRoot = func(root, group uint64, depth int) error {
			top, err := k.ReadU64(root) // rb_root_cached starts with rb_root.rb_node
			if err != nil {
				return fmt.Errorf("CPU %d: cfs_rq tree at %#x: %w", c.ID, root, err)
			}
			return walk(top, group, depth)
		}
		if err := walkRoot(q.CFSRoot, 0, 0); err != nil {
			k.warn("runq: %v", err)
		}
		// RT: each priority's list of sched_rt_entity.run_list.
		for p := uint64(0); p < nQueue; p++ {
			head := q.RTArray + rtQueue + p*listSize
			next, err := k.ReadU64(head + listNext)
			for i := 0; err == nil && next != head && next != 0 && i < maxQueued; i++ {
				task := next - rtRunList - taskRT
				q.RT = append(q.RT, QueuedTask{Prio: int32(p), Task: readTask(task)})
				next, err = k.ReadU64(next + listNext)
			}
			if err != nil {
				k.warn("runq: CPU %d RT list %d: %v", c.ID, p, err)
			}
		}
		out = append(out, q)
	}
	return out, nil
}

// taskAt is the model's task at a task_struct address, if it has one.
func (k *Kernel) taskAt(addr uint64) *Task {
	for _, t := range k.Tasks {
		if t.Addr == addr {
			return t
		}
	}
	return nil
}
