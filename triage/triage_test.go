package triage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

func open(t testing.TB, files ...string) *Triage { return openWith(t, set61(t), true, files...) }

func set61(t testing.TB) fixtures.Set { return fixtures.Sets(t)[0] }

// forEachSet runs f for the 6.1 and the 6.12 kernel fixtures.
func forEachSet(t *testing.T, f func(t *testing.T, set fixtures.Set)) {
	forSets(t, fixtures.Sets(t), f)
}

// forEachSet418 runs f for the 6.1, 6.12 and 4.18 (DWARF only) fixtures.
func forEachSet418(t *testing.T, f func(t *testing.T, set fixtures.Set)) {
	forSets(t, fixtures.SetsWith418(t), f)
}

func forSets(t *testing.T, sets []fixtures.Set, f func(t *testing.T, set fixtures.Set)) {
	for _, set := range sets {
		t.Run(set.Name, func(t *testing.T) { f(t, set) })
	}
}

// openWith builds the triage of fixture files, with the vmlinux or from
// the dump's own kallsyms and BTF.
func openWith(t testing.TB, set fixtures.Set, withVmlinux bool, files ...string) *Triage {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, set.Path(t, strings.Split(f, "/")...))
	}
	d, err := vmcore.Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if !withVmlinux {
		k, err := kernel.LoadFromDump(d)
		if err != nil {
			t.Fatal(err)
		}
		return &Triage{K: k, Dumps: paths}
	}
	vmlinux := set.Path(t, "kernel", "vmlinux")
	v, err := symbols.Open(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	k, err := kernel.Load(d, v)
	if err != nil {
		t.Fatal(err)
	}
	return &Triage{K: k, Vmlinux: vmlinux, Dumps: paths}
}

func console(t testing.TB, set fixtures.Set) string {
	b, err := os.ReadFile(set.Path(t, "oom", "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	// Only the crashed kernel's part, before the capture kernel boots.
	if i := strings.Index(s, "Kernel panic - not syncing"); i >= 0 {
		if j := strings.Index(s[i:], "Linux version"); j >= 0 {
			s = s[:i+j]
		}
	}
	return s
}

func consoleNumber(t testing.TB, c, re string) uint64 {
	m := regexp.MustCompile(re).FindStringSubmatch(c)
	if m == nil {
		t.Fatalf("console log has no %s", re)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// The kernel's own OOM report (show_mem) printed the numbers kmem -i
// reads from the dump a few instructions later.
func TestKmemMatchesShowMem(t *testing.T) { forEachSet418(t, testKmemMatchesShowMem) }

func testKmemMatchesShowMem(t *testing.T, set fixtures.Set) {
	c := console(t, set)
	tr := openWith(t, set, true, "oom/vmcore.lzo")
	km, err := tr.Kmem()
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]uint64{}
	for _, r := range km.Rows {
		rows[r.Name] = r.Pages
	}
	ram := consoleNumber(t, c, `(\d+) pages RAM`)
	reserved := consoleNumber(t, c, `(\d+) pages reserved`)
	// The other CPUs run on between the report and the panic's stop
	// NMI: free pages were seen to move by a few pages in some fixture
	// generations (806 printed, 798 dumped). Allow what per-CPU vmstat
	// deltas alone can hide: 125 pages a CPU, the kernel's largest
	// stat_threshold (mm/vmstat.c).
	drift := uint64(125 * len(tr.K.CPUs))
	for _, tc := range []struct {
		name  string
		want  uint64
		slack uint64
	}{
		{"TOTAL MEM", ram - reserved, 0},
		{"FREE", consoleNumber(t, c, ` free:(\d+) free_pcp`), drift},
		{"SHARED", consoleNumber(t, c, ` shmem:(\d+) pagetables`), 0},
		{"CACHED", consoleNumber(t, c, `(\d+) total pagecache pages`), 0},
	} {
		if got := rows[tc.name]; got+tc.slack < tc.want || got > tc.want+tc.slack {
			t.Errorf("%s: %d pages, the kernel printed %d (allowed drift %d)", tc.name, got, tc.want, tc.slack)
		}
	}
	// Huge pages and swap as show_mem printed them (hugepages_* per node
	// and size, in pages of that size; swap in kB).
	pageKB := tr.K.Dump.PageSize() / 1024
	var hugeTotal, hugeFree uint64
	for _, m := range regexp.MustCompile(`hugepages_total=(\d+) hugepages_free=(\d+) hugepages_surp=\d+ hugepages_size=(\d+)kB`).FindAllStringSubmatch(c, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		f, _ := strconv.ParseUint(m[2], 10, 64)
		kb, _ := strconv.ParseUint(m[3], 10, 64)
		hugeTotal += n * kb / pageKB
		hugeFree += f * kb / pageKB
	}
	swapTotal := consoleNumber(t, c, `Total swap = (\d+)kB`) / pageKB
	swapFree := consoleNumber(t, c, `Free swap  = (\d+)kB`) / pageKB
	for name, want := range map[string]uint64{"TOTAL HUGE": hugeTotal, "HUGE FREE": hugeFree,
		"TOTAL SWAP": swapTotal, "SWAP FREE": swapFree, "SWAP USED": swapTotal - swapFree} {
		if got, ok := rows[name]; !ok || got != want {
			t.Errorf("%s: %d pages (shown %v), the kernel printed %d", name, got, ok, want)
		}
	}
	if rows["USED"] != rows["TOTAL MEM"]-rows["FREE"] || rows["SLAB"] == 0 || rows["COMMIT LIMIT"] == 0 || rows["COMMITTED"] == 0 {
		t.Errorf("rows %v", rows)
	}
	if len(km.Missing) > 0 {
		t.Errorf("missing: %v", km.Missing)
	}
}

// bt of the panicking task is exactly the kernel's own reliable trace
// from panic() on, and its user-mode exception frame holds the RIP and
// RSP the kernel printed.
func TestBTMatchesConsole(t *testing.T) { forEachSet418(t, testBTMatchesConsole) }

func testBTMatchesConsole(t *testing.T, set fixtures.Set) {
	c := console(t, set)
	var trace []consoleFrame
	started := false
	entry := regexp.MustCompile(`\]\s+(\?\s+)?([A-Za-z_][\w.]*)\+0x`)
	for _, line := range strings.Split(c[strings.Index(c, "Kernel panic - not syncing"):], "\n") {
		if strings.Contains(line, "</TASK>") {
			break
		}
		m := entry.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		started = started || (m[2] == "panic" && m[1] == "")
		if started {
			trace = append(trace, consoleFrame{m[2], m[1] != ""})
		}
	}
	reliable, tail := splitConsoleTrace(trace)
	rip := regexp.MustCompile(`RIP: 0033:0x([0-9a-f]+)`).FindStringSubmatch(c)
	rsp := regexp.MustCompile(`RSP: 002b:([0-9a-f]+)`).FindStringSubmatch(c)
	// The kernel prints the user registers when its own unwind reached
	// the entry frame, i.e. when its trace has no guessed tail.
	if len(reliable)+len(tail) < 5 || (len(tail) == 0 && (rip == nil || rsp == nil)) {
		t.Fatalf("console trace %v, guessed tail %v, rip %v rsp %v", reliable, tail, rip, rsp)
	}
	for _, f := range []string{"oom/vmcore.lzo", "oom/vmcore.elf"} {
		bts, err := openWith(t, set, true, f).BT(false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(bts) != 1 || bts[0].Stopped != "" {
			t.Fatalf("%s: %+v", f, bts)
		}
		var got []string
		var user *BTFrame
		for i, fr := range bts[0].Frames {
			name := strings.SplitN(fr.Function, "+", 2)[0]
			if name == "panic" || len(got) > 0 {
				got = append(got, name)
			}
			if fr.User {
				user = &bts[0].Frames[i]
				got = got[:len(got)-1] // the user frame is not a function
			}
		}
		if err := matchConsoleTrace(got, reliable, tail); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if user == nil {
			t.Errorf("%s: bt does not reach user space", f)
		} else if rip != nil && (strings.TrimLeft(user.Regs["rip"], "0") != rip[1] || user.Regs["rsp"] != rsp[1]) {
			t.Errorf("%s: user frame %+v, kernel printed RIP %s RSP %s", f, user, rip[1], rsp[1])
		}
	}
}

// consoleFrame is one entry of a kernel-printed Call Trace; Guess marks
// a "?" entry (a text address found on the stack, not unwound).
type consoleFrame struct {
	Name  string
	Guess bool
}

// splitConsoleTrace returns the unwound entries and, when the kernel's
// unwinder lost the frame and only scanned the stack after its last
// unwound entry (4.18 built with gcc-11: objtool left .cold code
// undescribed), the guessed entries after it.
func splitConsoleTrace(trace []consoleFrame) (reliable, tail []string) {
	last := -1
	for i, e := range trace {
		if !e.Guess {
			reliable = append(reliable, e.Name)
			last = i
		}
	}
	if last >= 0 && last < len(trace)-1 {
		for _, e := range trace[last+1:] {
			tail = append(tail, e.Name)
		}
	}
	return reliable, tail
}

// matchConsoleTrace checks a backtrace against the kernel's: every
// unwound entry in order, then, where the kernel only guessed the rest,
// frames taken in order from its guesses (a guess may be a stale return
// address, not a frame) ending at its last one, the entry code. kallsyms
// names the nearest label (entry_SYSCALL_64_after_hwframe); the symbol
// table's sized function contains it.
func matchConsoleTrace(got, reliable, tail []string) error {
	same := func(g, w string) bool { return strings.HasPrefix(w, g) }
	if len(got) < len(reliable) {
		return fmt.Errorf("bt\n  %v\nkernel printed\n  %v then guessed %v", got, reliable, tail)
	}
	for i, w := range reliable {
		if !same(got[i], w) {
			return fmt.Errorf("frame %d is %s, the kernel printed %s\nbt %v\nkernel printed %v then guessed %v", i, got[i], w, got, reliable, tail)
		}
	}
	rest := got[len(reliable):]
	if len(tail) == 0 {
		if len(rest) > 0 {
			return fmt.Errorf("bt has %v beyond the kernel's trace %v", rest, reliable)
		}
		return nil
	}
	j := 0
	for _, g := range rest {
		for j < len(tail) && !same(g, tail[j]) {
			j++
		}
		if j == len(tail) {
			return fmt.Errorf("frame %s is not among the kernel's guesses %v in order (bt %v)", g, tail, got)
		}
		j++
	}
	if len(rest) == 0 || !same(rest[len(rest)-1], tail[len(tail)-1]) {
		return fmt.Errorf("bt %v does not end at the kernel's last entry %s (guessed %v)", got, tail[len(tail)-1], tail)
	}
	return nil
}

// Every task's stack unwinds to its end: user space, or the start of a
// kernel thread, with no early stop.
func TestBTAll(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		files := []string{"oom/vmcore.elf", "modcrash/vmcore.elf"}
		switch set.Name {
		case "6.1":
			files = append(files, "oom/vmcore.lzo", "qemu57/vmcore.elf")
		case fixtures.Series418:
			files = append(files, "sysrq/vmcore.elf")
		}
		testBTAll(t, set, files)
	})
}

func testBTAll(t *testing.T, set fixtures.Set, files []string) {
	for _, f := range files {
		tr := openWith(t, set, true, f)
		bts, err := tr.BT(true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(bts) != len(tr.K.Tasks) {
			t.Fatalf("%d backtraces for %d tasks", len(bts), len(tr.K.Tasks))
		}
		for i, bt := range bts {
			task := tr.K.Tasks[i]
			// A CPU caught in user space has just its user frame.
			inUser := len(bt.Frames) == 1 && bt.Frames[0].User
			if bt.Stopped != "" || (len(bt.Frames) < 2 && !inUser) {
				t.Errorf("%s pid %d %s: %d frames, stopped: %s", f, bt.PID, bt.Command, len(bt.Frames), bt.Stopped)
				continue
			}
			if task.OnCPU == nil && !strings.HasPrefix(bt.Frames[0].Function, "__schedule+") {
				t.Errorf("pid %d: frame 0 is %s", bt.PID, bt.Frames[0].Function)
			}
			for _, fr := range bt.Frames {
				if fr.Function == "?" && !fr.User {
					t.Errorf("pid %d: unnamed frame at %s", bt.PID, fr.PC)
				}
			}
		}
	}
}

func TestSysAndPS(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) { testSysAndPS(t, openWith(t, set, true, "oom/vmcore.elf")) })
}

func testSysAndPS(t *testing.T, tr *Triage) {
	s, err := tr.Sys()
	if err != nil {
		t.Fatal(err)
	}
	if s.Panic != "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled" {
		t.Errorf("panic %q", s.Panic)
	}
	if s.Release != tr.K.Info.OSRelease || s.Machine != "x86_64" || s.CPUs != 2 || s.PanicComm != "stress" || s.PanicPID == nil || s.MemoryBytes == 0 {
		t.Errorf("sys %+v", s)
	}
	if s.UptimeSec < 1 || s.CrashTime == "" {
		t.Errorf("uptime %v crash time %q", s.UptimeSec, s.CrashTime)
	}
	ps, err := tr.PS()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != len(tr.K.Tasks) {
		t.Fatalf("ps lists %d of %d tasks", len(ps), len(tr.K.Tasks))
	}
	running, panicRSS := 0, uint64(0)
	for _, e := range ps {
		if e.Running {
			running++
		}
		if e.Kthread && e.PID > 2 && e.PPID != 2 {
			t.Errorf("kernel thread %d %s has parent %d, not kthreadd", e.PID, e.Comm, e.PPID)
		}
		if e.Panic {
			panicRSS = e.RSSKB
		}
	}
	if running != 2 || panicRSS < 1024 {
		t.Errorf("%d running, panicking task RSS %d KB", running, panicRSS)
	}
	// Text and JSON outputs of every command.
	for _, cmd := range [][]string{{"sys"}, {"ps"}, {"bt"}, {"bt", "-a"}, {"bt", "1"}, {"log"}, {"kmem", "-i"}, {"mod"}, {"help"}} {
		var text, js bytes.Buffer
		if err := tr.Run(cmd, &text, false); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		if err := tr.Run(cmd, &js, true); err != nil {
			t.Fatalf("%v --json: %v", cmd, err)
		}
		var v any
		if text.Len() == 0 || json.Unmarshal(js.Bytes(), &v) != nil {
			t.Errorf("%v: text %d bytes, JSON %q", cmd, text.Len(), js.String()[:min(100, js.Len())])
		}
	}
	if err := tr.Run([]string{"nonsense"}, &bytes.Buffer{}, false); err == nil {
		t.Error("unknown command accepted")
	}
}

// mod lists what /proc/modules showed in the guest before the crash.
func TestModMatchesProcModules(t *testing.T) { forEachSet418(t, testModMatchesProcModules) }

func testModMatchesProcModules(t *testing.T, set fixtures.Set) {
	c := console(t, set)
	tr := openWith(t, set, true, "oom/vmcore.lzo")
	mods, err := tr.Mod()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range mods {
		got[m.Name] = m.Base
	}
	// /proc/modules lines: name size refcount deps state address
	re := regexp.MustCompile(`(?m)^(\w+) (\d+) \d+ \S+ (Live|Loading|Unloading) 0x([0-9a-f]+)`)
	found := re.FindAllStringSubmatch(c, -1)
	if len(found) == 0 {
		t.Fatal("the console log has no /proc/modules listing")
	}
	for _, m := range found {
		if got[m[1]] != m[4] {
			t.Errorf("module %s at 0x%s in /proc/modules, mod says %q", m[1], m[4], got[m[1]])
		}
	}
	if len(mods) != len(found) {
		t.Errorf("mod lists %d modules, /proc/modules %d", len(mods), len(found))
	}
}

// A crash inside a module: bt names the module's functions from the
// module's own symbols and unwinds through them with the module's ORC,
// matching the Oops trace the kernel printed.
func TestBTModuleCrash(t *testing.T) { forEachSet418(t, testBTModuleCrash) }

func testBTModuleCrash(t *testing.T, set fixtures.Set) {
	b, err := os.ReadFile(set.Path(t, "modcrash", "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	c := string(b)
	i := strings.Index(c, "Oops: ")
	if i < 0 {
		t.Fatal("no Oops in the modcrash console log")
	}
	c = c[i:]
	trace := []consoleFrame{{regexp.MustCompile(`RIP: 0010:(\w+)\+`).FindStringSubmatch(c)[1], false}}
	entry := regexp.MustCompile(`\]\s+(\?\s+)?([A-Za-z_][\w.]*)\+0x`)
	for _, line := range strings.Split(c[strings.Index(c, "Call Trace:"):], "\n") {
		if strings.Contains(line, "</TASK>") || strings.Contains(line, "Modules linked in") {
			break
		}
		if m := entry.FindStringSubmatch(line); m != nil {
			trace = append(trace, consoleFrame{m[2], m[1] != ""})
		}
	}
	reliable, tail := splitConsoleTrace(trace)
	tr := openWith(t, set, true, "modcrash/vmcore.lzo")
	bts, err := tr.BT(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range bts[0].Frames {
		if !f.User {
			got = append(got, strings.SplitN(f.Function, "+", 2)[0])
		}
	}
	if err := matchConsoleTrace(got, reliable, tail); err != nil {
		t.Fatal(err)
	}
	if bts[0].Stopped != "" || !bts[0].Frames[len(bts[0].Frames)-1].User {
		t.Errorf("bt stopped (%q) before user space", bts[0].Stopped)
	}
	if !strings.Contains(bts[0].Frames[0].Function, "[vmcore_crash]") {
		t.Errorf("frame 0 %q does not name the module", bts[0].Frames[0].Function)
	}
	s, _ := tr.Sys()
	if !strings.HasPrefix(s.Panic, "Oops: ") {
		t.Errorf("panic message %q", s.Panic)
	}
}

// Without a vmlinux (kallsyms and BTF from the dump) every command gives
// what it gives with one; backtraces reach the same addresses.
func TestWithoutVmlinux(t *testing.T) {
	forEachSet(t, func(t *testing.T, set fixtures.Set) {
		files := []string{"oom/vmcore.elf", "modcrash/vmcore.lzo"}
		if set.Name == "6.1" {
			files = append(files, "oom/vmcore.lzo", "qemu57/vmcore.kdump-zlib")
		}
		testWithoutVmlinux(t, set, files)
	})
}

func testWithoutVmlinux(t *testing.T, set fixtures.Set, files []string) {
	for _, f := range files {
		with, without := openWith(t, set, true, f), openWith(t, set, false, f)
		for _, cmd := range [][]string{{"ps"}, {"log"}, {"kmem"}, {"mod"}} {
			var a, b bytes.Buffer
			if err := with.Run(cmd, &a, true); err != nil {
				t.Fatal(err)
			}
			if err := without.Run(cmd, &b, true); err != nil {
				t.Fatalf("%s %v without vmlinux: %v", f, cmd, err)
			}
			if a.String() != b.String() {
				t.Errorf("%s %v differs without the vmlinux", f, cmd)
			}
		}
		ba, _ := with.BT(true, nil)
		bb, err := without.BT(true, nil)
		if err != nil {
			t.Fatal(err)
		}
		guessed := 0
		for i := range ba {
			x, y := ba[i].Frames, bb[i].Frames
			if bb[i].Stopped != "" {
				t.Errorf("%s pid %d: stopped without vmlinux: %s", f, ba[i].PID, bb[i].Stopped)
			}
			// Where ORC has no entry and the DWARF CFI of the vmlinux is
			// missing, a frame-pointer step is marked as a guess; from
			// there on the traces may differ, but they rejoin: the last
			// frames (the stack's start) are the same.
			if len(y) > 1 && y[1].Kind == "frame pointer" {
				guessed++
				if x[len(x)-1].SP != y[len(y)-1].SP || x[len(x)-1].PC != y[len(y)-1].PC {
					t.Errorf("%s pid %d: guessed trace does not reach the same stack start", f, ba[i].PID)
				}
				continue
			}
			if len(x) != len(y) {
				t.Errorf("%s pid %d: %d frames with vmlinux, %d without", f, ba[i].PID, len(x), len(y))
				continue
			}
			for j := range x {
				if x[j].PC != y[j].PC || x[j].SP != y[j].SP || (y[j].Function == "?" && !y[j].User) {
					t.Errorf("%s pid %d frame %d: %s %s vs %s %s", f, ba[i].PID, j, x[j].Function, x[j].PC, y[j].Function, y[j].PC)
				}
			}
		}
		if guessed > 1 {
			t.Errorf("%s: %d traces needed frame-pointer guesses", f, guessed)
		}
		sa, _ := with.Sys()
		sb, _ := without.Sys()
		sa.Kernel = ""
		ja, _ := json.Marshal(sa)
		jb, _ := json.Marshal(sb)
		if string(ja) != string(jb) {
			t.Errorf("%s sys differs:\n%s\n%s", f, ja, jb)
		}
	}
}

// The scale fixture: a kernel with 10,000+ tasks lists every one of them
// (6.1 and 4.18; 6.12 has no scale fixture).
func TestScaleTaskCount(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	forSets(t, []fixtures.Set{sets[0], sets[2]}, func(t *testing.T, set fixtures.Set) { testScaleTaskCount(t, set) })
}

func testScaleTaskCount(t *testing.T, set fixtures.Set) {
	tr := openWith(t, set, true, "scale/vmcore.lzo")
	ps, err := tr.PS()
	if err != nil {
		t.Fatal(err)
	}
	a, err := tr.K.Symbol("nr_threads")
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	if err := tr.K.Read(b[:], a); err != nil {
		t.Fatal(err)
	}
	nr := int(binary.LittleEndian.Uint32(b[:]))
	if len(ps) < 10000 || len(ps) != nr+len(tr.K.CPUs) || len(tr.K.Warnings()) > 0 {
		t.Fatalf("ps lists %d tasks; nr_threads %d + %d CPUs; warnings %q", len(ps), nr, len(tr.K.CPUs), tr.K.Warnings())
	}
}
