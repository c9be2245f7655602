package triage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// ps -u, -k, -G and command names select what crash's do: the user tasks
// and the kernel threads split the readable tasks between them, -G keeps
// one line per thread group, names keep only those tasks.
func TestPSFilters(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		tr := openWith(t, set, true, "oom/vmcore.elf")
		get := func(args ...string) PSList {
			var b bytes.Buffer
			if err := tr.Run(append([]string{"ps"}, args...), &b, true); err != nil {
				t.Fatal(err)
			}
			var l PSList
			if err := json.Unmarshal(b.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			return l
		}
		all, user, kern, leaders, stress := get(), get("-u"), get("-k"), get("-G"), get("stress")
		readable := 0
		for _, e := range all {
			if e.Unreadable == "" {
				readable++
			}
		}
		if len(user) == 0 || len(kern) == 0 || len(user)+len(kern) != readable {
			t.Errorf("%d user + %d kernel tasks, %d readable", len(user), len(kern), readable)
		}
		for _, e := range user {
			if e.Kthread {
				t.Errorf("ps -u lists kernel thread %d %s", e.PID, e.Comm)
			}
		}
		for _, e := range kern {
			if !e.Kthread {
				t.Errorf("ps -k lists user task %d %s", e.PID, e.Comm)
			}
		}
		tgid := map[int32]int32{}
		for _, task := range tr.K.Tasks {
			tgid[task.PID] = task.TGID
		}
		for _, e := range leaders {
			if e.PID != 0 && tgid[e.PID] != e.PID {
				t.Errorf("ps -G lists %d, a thread of %d", e.PID, tgid[e.PID])
			}
		}
		want := 0
		for _, e := range all {
			if e.Comm == "stress" {
				want++
			}
		}
		if want == 0 || len(stress) != want {
			t.Errorf("ps stress: %d lines, %d stress tasks", len(stress), want)
		}
		if err := tr.Run([]string{"ps", "-u", "-k"}, &bytes.Buffer{}, false); err == nil {
			t.Error("ps -u -k accepted")
		}
	})
}

// bt -c CPU is the backtrace of the task ps marks as running on that CPU.
func TestBTByCPU(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		tr := openWith(t, set, true, "oom/vmcore.elf")
		ps, err := tr.PS()
		if err != nil {
			t.Fatal(err)
		}
		for cpu := range tr.K.CPUs {
			bt, err := tr.BTWith(BTOptions{CPUs: []int{cpu}})
			if err != nil || len(bt) != 1 {
				t.Fatalf("bt -c %d: %v, %d tasks", cpu, err, len(bt))
			}
			found := false
			for _, e := range ps {
				if e.Running && e.CPU == cpu && e.PID == bt[0].PID && e.Task == bt[0].Task {
					found = true
				}
			}
			if !found || bt[0].CPU != cpu {
				t.Errorf("bt -c %d: pid %d task %s cpu %d is not ps's running task there", cpu, bt[0].PID, bt[0].Task, bt[0].CPU)
			}
		}
		if err := tr.Run([]string{"bt", "-c", fmt.Sprint(len(tr.K.CPUs))}, &bytes.Buffer{}, false); err == nil {
			t.Error("bt -c of a CPU the dump does not have was accepted")
		}
	})
}

// runq is crash's runq, byte for byte, on every 4.18 dump (crash reads
// 4.18 right; one of them has a CFS task waiting); on 6.x each CPU's
// current task is ps's running one there.
func TestRunqMatchesCrash(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	for _, dump := range []string{"oom/vmcore.elf", "sysrq/vmcore.elf", "modcrash/vmcore.elf", "scale/vmcore.lzo"} {
		tr := openWith(t, sets[2], true, dump)
		got := runText(t, tr, "runq")
		want := crashBT(t, sets[2], dump, "runq")
		if strings.TrimRight(got, "\n") != strings.TrimRight(want, "\n") {
			t.Errorf("%s: runq:\n%s\ncrash:\n%s", dump, got, want)
		}
	}
	for _, set := range sets[:2] {
		tr := openWith(t, set, true, "oom/vmcore.elf")
		qs, err := tr.K.RunQueues()
		if err != nil || len(qs) != len(tr.K.CPUs) {
			t.Fatalf("%s: %v", set.Name, err)
		}
		for _, q := range qs {
			if c := tr.K.CPUs[q.CPU].Curr; c != nil && (q.Curr == nil || q.Curr.Addr != c.Addr) {
				t.Errorf("%s CPU %d: runq current %+v, the model's %#x", set.Name, q.CPU, q.Curr, c.Addr)
			}
		}
	}
}
