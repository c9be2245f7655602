package kernel

import (
	"errors"
	"fmt"
	"math/bits"
)

// tasksFromPIDs finds tasks through init_pid_ns's pid IDR (an xarray of
// struct pid), which does not depend on the task list: when the list is
// cut by a page the dump lacks, the tasks beyond the cut are still found.
func (k *Kernel) tasksFromPIDs(add func(*Task)) (int, error) {
	b := k.Types
	ns, err := k.Symbol("init_pid_ns")
	if err != nil {
		return 0, err
	}
	idrOff, err1 := b.Offset("pid_namespace", "idr")
	if err1 != nil {
		// Kernels before 4.15 hash pids in pid_hash instead; only the
		// task list finds their tasks.
		return 0, fmt.Errorf("pid IDR: struct pid_namespace has no idr (%w), so tasks beyond the cut in the task list are not found", err1)
	}
	rtOff, err2 := b.Offset("idr", "idr_rt")
	headOff, err3 := b.Offset("xarray", "xa_head")
	shiftOff, err4 := b.Offset("xa_node", "shift")
	slotsOff, err5 := b.Offset("xa_node", "slots")
	nslots, err6 := b.ArrayLen("xa_node", "slots")
	tasksOff, err7 := b.Offset("pid", "tasks")
	linksOff, err8 := b.Offset("task_struct", "pid_links")
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8); err != nil {
		return 0, err
	}
	if nslots < 2 || nslots&(nslots-1) != 0 {
		return 0, fmt.Errorf("xa_node.slots[%d] is not a power of two", nslots)
	}
	// Each level indexes XA_CHUNK_SHIFT bits of an unsigned long index.
	maxDepth := (64 + bits.TrailingZeros64(nslots) - 1) / bits.TrailingZeros64(nslots)
	head, err := k.ReadU64(ns + idrOff + rtOff + headOff)
	if err != nil {
		return 0, err
	}
	found, visited := 0, 0
	// A node the dump lacks loses only the pids below it: the walk goes
	// on with its siblings and says how many nodes it could not read.
	var skipped []string
	var walk func(entry uint64, depth int) error
	walk = func(entry uint64, depth int) error {
		if entry == 0 || depth > maxDepth {
			return nil
		}
		if visited++; visited > MaxTasks {
			return errors.New("pid IDR larger than any kernel's")
		}
		// xarray tagging: a node pointer has low bits 10 (and is above
		// the internal-entry range); value entries have bit 0 set.
		if entry&3 == 2 && entry > 4096 {
			node := entry - 2
			slots := make([]byte, 8*nslots)
			if _, err := k.readU32(node + shiftOff); err != nil {
				skipped = append(skipped, err.Error())
				return nil
			}
			if err := k.Read(slots, node+slotsOff); err != nil {
				skipped = append(skipped, err.Error())
				return nil
			}
			for i := uint64(0); i < nslots; i++ {
				if err := walk(le64(slots[8*i:]), depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		if entry&3 != 0 {
			return nil // a value or internal entry, not a struct pid
		}
		first, err := k.ReadU64(entry + tasksOff) // tasks[PIDTYPE_PID].first
		if err != nil || first == 0 {
			return nil // a pid whose page is gone: skip it, not the tree
		}
		t, err := k.readTask(first - linksOff)
		if err != nil {
			return nil
		}
		found++
		add(t)
		return nil
	}
	if err := walk(head, 0); err != nil {
		return found, fmt.Errorf("pid IDR: %w", err)
	}
	if len(skipped) > 0 {
		return found, fmt.Errorf("pid IDR: %d nodes unreadable, the pids below them are not found (first: %s)", len(skipped), skipped[0])
	}
	return found, nil
}
