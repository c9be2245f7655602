package triage

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// slabinfoRow is one cache of /proc/slabinfo (version 2.1).
type slabinfoRow struct{ objsize, perSlab, pagesPerSlab uint64 }

func parseSlabinfo(t *testing.T, lines []string) map[string]slabinfoRow {
	rows := map[string]slabinfoRow{}
	bad := 0
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 6 || strings.HasPrefix(l, "slabinfo") || strings.HasPrefix(l, "#") {
			continue
		}
		var n [3]uint64
		var err error
		for i := range n {
			if n[i], err = strconv.ParseUint(f[3+i], 10, 64); err != nil {
				break
			}
		}
		if err != nil {
			bad++ // a kernel line printed into the middle
			continue
		}
		rows[f[0]] = slabinfoRow{n[0], n[1], n[2]}
	}
	if len(rows) < 20 || bad > 3 {
		t.Fatalf("/proc/slabinfo block: %d caches, %d lines unparsed", len(rows), bad)
	}
	return rows
}

// kmem -s against /proc/slabinfo printed just before the crash: every
// cache it listed is on the dump's list with the same slot size, objects
// per slab and slab size (the counts moved on since, so only their
// consistency is checked), and the dump lists hardly any cache more.
func TestKmemSlabsMatchSlabinfo(t *testing.T) { forEachSet418(t, testKmemSlabsMatchSlabinfo) }

func testKmemSlabsMatchSlabinfo(t *testing.T, set fixtures.Set) {
	for _, scenario := range []string{"oom", "modcrash"} {
		t.Run(scenario, func(t *testing.T) {
			want := parseSlabinfo(t, fixtures.ConsoleSection(t, set, scenario, "/proc/slabinfo"))
			tr := openWith(t, set, true, scenario+"/vmcore.elf")
			l, err := tr.KmemSlabs(nil)
			if err != nil {
				t.Fatal(err)
			}
			if l.Error != "" {
				t.Errorf("cache list: %s", l.Error)
			}
			got := map[string]SlabEntry{}
			for _, c := range l.Caches {
				got[c.Name] = c
				if c.Allocated > c.Total || c.Total < c.Slabs || c.Total > c.Slabs*c.ObjPerSlab {
					t.Errorf("%s: allocated %d, total %d, slabs %d of %d objects", c.Name, c.Allocated, c.Total, c.Slabs, c.ObjPerSlab)
				}
				if c.ObjectSize > c.Size {
					t.Errorf("%s: object size %d > slot size %d", c.Name, c.ObjectSize, c.Size)
				}
				if c.Unread != "" {
					t.Logf("%s: %s", c.Name, c.Unread)
				}
			}
			for name, w := range want {
				c, ok := got[name]
				if !ok {
					t.Errorf("cache %s of /proc/slabinfo is not on the dump's slab_caches list", name)
					continue
				}
				if c.Size != w.objsize || c.ObjPerSlab != w.perSlab || c.SlabSize != w.pagesPerSlab*tr.K.Info.PageSize {
					t.Errorf("%s: slot %d, %d per slab, slab %d bytes; /proc/slabinfo: %d, %d, %d pages", name, c.Size, c.ObjPerSlab, c.SlabSize, w.objsize, w.perSlab, w.pagesPerSlab)
				}
			}
			if extra := len(got) - len(want); extra < 0 || extra > 5 {
				t.Errorf("dump has %d caches, /proc/slabinfo %d", len(got), len(want))
			}
			var text bytes.Buffer
			if err := l.text(&text); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(text.String(), "\n"); n < len(l.Caches)+1 {
				t.Errorf("kmem -s printed %d lines for %d caches", n, len(l.Caches))
			}
		})
	}
}

// kmem -s against crash's on the 4.18 and 6.1 dumps, whose slabs crash
// 8.0.2 reads (not 6.12's): the same caches in the same order with the
// same numbers, every row.
func TestKmemSlabsMatchCrash(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	forSets(t, []fixtures.Set{sets[0], sets[2]}, testKmemSlabsMatchCrash)
}

func testKmemSlabsMatchCrash(t *testing.T, set fixtures.Set) {
	for _, dump := range []string{"oom/vmcore.elf", "modcrash/vmcore.lzo"} {
		t.Run(dump, func(t *testing.T) {
			theirs := crashRows(crashBT(t, set, dump, "kmem -s"))
			tr := openWith(t, set, true, dump)
			var b bytes.Buffer
			if err := tr.Run([]string{"kmem", "-s"}, &b, false); err != nil {
				t.Fatal(err)
			}
			ours := crashRows(b.String())
			if len(theirs) < 20 {
				t.Fatalf("crash printed %d caches", len(theirs))
			}
			if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
				t.Errorf("kmem -s differs from crash's:\n%s", rowDiff(theirs, ours))
			}
		})
	}
}

// crashRows keeps the cache rows of a kmem -s output, fields joined by a
// space.
func crashRows(out string) []string {
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 7 && hexWord.MatchString(strings.Repeat("0", max(0, 16-len(f[0])))+f[0]) && f[0] != "CACHE" {
			rows = append(rows, strings.Join(f, " "))
		}
	}
	return rows
}

// rowDiff shows the rows of a that b lacks and the reverse.
func rowDiff(a, b []string) string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range l {
			m[s] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out strings.Builder
	for _, s := range a {
		if !mb[s] {
			out.WriteString("- " + s + "\n")
		}
	}
	for _, s := range b {
		if !ma[s] {
			out.WriteString("+ " + s + "\n")
		}
	}
	return out.String()
}

// kmem ADDR against crash's on 6.1 and 4.18 for an address inside the
// panicking task's task_struct: the same cache row, the same slab with
// the same counts, the same allocated object, the same struct page.
func TestKmemAddrMatchesCrash(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	forSets(t, []fixtures.Set{sets[0], sets[2]}, func(t *testing.T, set fixtures.Set) {
		tr := openWith(t, set, true, "oom/vmcore.elf")
		var task uint64
		for _, tk := range tr.K.Tasks {
			if tk.Panic {
				task = tk.Addr
			}
		}
		if task == 0 {
			t.Fatal("no panicking task")
		}
		addr := strconv.FormatUint(task+100, 16)
		var b bytes.Buffer
		if err := tr.Run([]string{"kmem", addr}, &b, false); err != nil {
			t.Fatal(err)
		}
		theirs := crashBT(t, set, "oom/vmcore.elf", "kmem "+addr)
		ours := b.String()
		field := func(out string, after string, n int) string {
			lines := strings.Split(out, "\n")
			for i, l := range lines {
				if strings.Fields(l) != nil && strings.Join(strings.Fields(l), " ") == after && i+1 < len(lines) {
					f := strings.Fields(lines[i+1])
					if len(f) >= n {
						return strings.Join(f[:n], " ")
					}
				}
			}
			t.Fatalf("no line after %q in:\n%s", after, out)
			return ""
		}
		for _, c := range []struct {
			header string
			n      int
		}{
			{"CACHE OBJSIZE ALLOCATED TOTAL SLABS SSIZE NAME", 7},
			{"FREE / [ALLOCATED]", 1},
		} {
			if o, th := field(ours, c.header, c.n), field(theirs, c.header, c.n); o != th {
				t.Errorf("after %q: ours %q, crash %q", c.header, o, th)
			}
		}
		// crash: SLAB MEMORY NODE TOTAL ALLOCATED FREE; ours has no NODE.
		th := strings.Fields(field(theirs, "SLAB MEMORY NODE TOTAL ALLOCATED FREE", 6))
		o := strings.Fields(field(ours, "SLAB MEMORY TOTAL ALLOCATED FREE", 5))
		if strings.Join(append(th[:2:2], th[3:]...), " ") != strings.Join(o, " ") {
			t.Errorf("slab: ours %v, crash %v", o, th)
		}
		if op, cp := field(ours, "PAGE PHYSICAL FLAGS", 1), field(theirs, "PAGE PHYSICAL MAPPING INDEX CNT FLAGS", 1); op != cp {
			t.Errorf("struct page: ours %s, crash %s", op, cp)
		}
		if !strings.Contains(ours, "["+strconv.FormatUint(task, 16)+"]") {
			t.Errorf("the task %x is not the allocated object:\n%s", task, ours)
		}
	})
}
