// Command driver measures vmcore-gdbserver beside gdb's own time, crash
// and drgn on the same dumps, and prints markdown tables (make bench).
//
//	go run ./testdata/bench/driver BIN FIXTURE-DIR [FIXTURE-DIR...]
//
// Each job runs 3 times (once if it takes over 5 s); the median wall time is shown with what the
// tool saw, so a fast tool that shows 3 of 58 tasks is not mistaken for a
// good one. A tool that fails shows its exit status.
package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/synthdump"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

type result struct {
	wall   time.Duration
	rssKB  int64
	out    string
	failed string
}

// run executes a command 3 times and keeps the median run.
func run(stdin string, name string, args ...string) result { return runEnv(nil, stdin, name, args...) }

// runEnv is run with these variables added to the environment.
func runEnv(env []string, stdin string, name string, args ...string) result {
	var rs []result
	for i := 0; i < 3; i++ {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		r := result{wall: time.Since(start), out: out.String()}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.rssKB = ru.Maxrss
		}
		if err != nil {
			r.failed = fmt.Sprintf("fails (%v)", err)
			return r
		}
		rs = append(rs, r)
		if r.wall > 5*time.Second {
			return r // a long job: one run is enough to compare
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].wall < rs[j].wall })
	return rs[len(rs)/2]
}

func (r result) time(extra string) string {
	if r.failed != "" {
		return r.failed
	}
	s := fmt.Sprintf("%.2f s", r.wall.Seconds())
	if extra != "" {
		s += " (" + extra + ")"
	}
	return s
}

var statsLine = regexp.MustCompile(`stats: client \S+: (\d+) packets, server time (\S+) \(\S+ a packet\), writes (\S+),`)

func serverShare(out string) string {
	m := statsLine.FindStringSubmatch(out)
	if m == nil {
		return "?"
	}
	return fmt.Sprintf("server %s + writes %s, %s packets", m[2], m[3], m[1])
}

func count(out, re string) int { return len(regexp.MustCompile(re).FindAllString(out, -1)) }

var logLine = `(?m)^\[ *\d+\.\d+\]` // a timestamped log line (ours, crash)

// ratio is a/b when b is a run that worked.
func ratio(a time.Duration, b result) string {
	if b.failed != "" || b.wall <= 0 || a <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a.Seconds()/b.wall.Seconds())
}

// openTime measures process start to the server's answer to
// qXfer:threads:read (a complete thread list: dump opened, symbols and
// types loaded, every task walked) and the process's peak RSS, median of 3;
// env is added to the server's environment.
func openTime(env []string, bin, vmlinux string, dumps []string) result {
	pkt := "qXfer:threads:read::0,fff0"
	var sum byte
	for i := 0; i < len(pkt); i++ {
		sum += pkt[i]
	}
	var rs []result
	for i := 0; i < 3; i++ {
		cmd := exec.Command(bin, append([]string{"serve", "--stdio", vmlinux}, dumps...)...)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		in, _ := cmd.StdinPipe()
		outp, _ := cmd.StdoutPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return result{failed: err.Error()}
		}
		fmt.Fprintf(in, "$%s#%02x", pkt, sum)
		r := bufio.NewReader(outp)
		var wall time.Duration
		var reply []byte
		for {
			c, err := r.ReadByte()
			if err != nil {
				break
			}
			if c == '#' {
				wall = time.Since(start)
				break
			}
			reply = append(reply, c)
		}
		in.Write([]byte("+$D#44"))
		in.Close()
		cmd.Wait()
		res := result{wall: wall}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.rssKB = ru.Maxrss
		}
		if !bytes.Contains(reply, []byte("<thread ")) {
			msg := strings.TrimSpace(stderr.String())
			if i := strings.IndexByte(msg, '\n'); i >= 0 {
				msg = msg[:i]
			}
			return result{failed: fmt.Sprintf("fails (no thread list: %q)", msg)}
		}
		rs = append(rs, res)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].wall < rs[j].wall })
	return rs[1]
}

// typeSections are the vmlinux sections each type source reads: .BTF, or
// what the DWARF index scans (symbols/dwarf.go).
var typeSections = map[string][]string{
	"btf":   {".BTF"},
	"dwarf": {".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str", ".debug_str_offsets", ".debug_addr"},
}

// hasBTF says whether the vmlinux has a .BTF section with bytes in it.
func hasBTF(vmlinux string) bool {
	f, err := elf.Open(vmlinux)
	if err != nil {
		return false
	}
	defer f.Close()
	s := f.Section(".BTF")
	return s != nil && s.Type != elf.SHT_NOBITS && s.Size > 0
}

// rawRead is the floor under a type source's load: reading its sections'
// bytes once (from the page cache, warm after the runs before it), in
// 1 MiB reads, median of 3. It returns the time and the byte count.
func rawRead(vmlinux, source string) (time.Duration, int64) {
	f, err := elf.Open(vmlinux)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	var ts []time.Duration
	var total int64
	buf := make([]byte, 1<<20)
	for i := 0; i < 3; i++ {
		total = 0
		start := time.Now()
		for _, name := range typeSections[source] {
			s := f.Section(name)
			if s == nil || s.Type == elf.SHT_NOBITS {
				continue
			}
			r := s.Open()
			for {
				n, err := r.Read(buf)
				total += int64(n)
				if err != nil {
					break
				}
			}
		}
		ts = append(ts, time.Since(start))
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts[1], total
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// gdbServe is gdb's pipe to the server (gdb waits up to 60 s for a reply,
// not its default 2 s: on a loaded machine the first reply, after the
// DWARF load, was seen to miss that and leave 0 threads). The shell command is fixed: the
// file names reach it through the environment (gdbEnv), never as text.
const gdbServe = `target remote | exec "$VMCORE_BENCH_BIN" serve --stdio --stats "$VMCORE_BENCH_VMLINUX" "$VMCORE_BENCH_DUMP"`

func gdbEnv(bin, vmlinux, dump string) []string {
	return []string{"VMCORE_BENCH_BIN=" + bin, "VMCORE_BENCH_VMLINUX=" + vmlinux, "VMCORE_BENCH_DUMP=" + dump}
}

// triageDumps are the dumps of the server and triage tables, in each
// fixture dir that has them: one per scenario, and the oom ELF.
var triageDumps = []string{"oom/vmcore.elf", "oom/vmcore.lzo", "sysrq/vmcore.lzo", "qemu57/vmcore.elf", "qemu57/vmcore.kdump-zlib", "modcrash/vmcore.lzo", "scale/vmcore.lzo"}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: driver BIN FIXTURE-DIR...")
		os.Exit(2)
	}
	bin, _ := filepath.Abs(os.Args[1])
	tmp, err := os.MkdirTemp("", "bench")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(tmp)
	drgnScript := filepath.Join(tmp, "triage.py")
	os.WriteFile(drgnScript, []byte(`from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_printk_records
n = s = 0
for t in for_each_task(prog):
    n += 1
    try:
        if len(prog.stack_trace(t)):
            s += 1
    except Exception:
        pass
print(n, "tasks", s, "stacks", len(get_printk_records(prog)), "log records")
`), 0o644)
	drgnTasks := filepath.Join(tmp, "tasks.py")
	os.WriteFile(drgnTasks, []byte(`from drgn.helpers.linux.pid import for_each_task
print(sum(1 for _ in for_each_task(prog)), "tasks")
`), 0o644)
	crashInput := "ps\nforeach bt\nlog\nexit\n"
	crashTask := `(?m)^[> ] +\d+ +-?\d+ +\d+ +[0-9a-f]{16} `
	frame0 := `(?m)^ *#0 `

	var serverRows, triageRows, typesRows, analyzeRows []string
	var fleetArgs []string
	for _, dir := range os.Args[2:] {
		vmlinux := filepath.Join(dir, "kernel", "vmlinux")
		release := filepath.Base(mustEval(dir))
		for _, d := range triageDumps {
			dump := filepath.Join(dir, d)
			if !exists(dump) {
				continue
			}
			st, _ := os.Stat(dump)
			name := release + " " + d
			open := openTime(nil, bin, vmlinux, []string{dump})
			gdbArgs := func(c string) []string {
				return []string{"-q", "-batch", "-nx", "-iex", "set remotetimeout 60", vmlinux, "-ex", gdbServe, "-ex", c}
			}
			env := gdbEnv(bin, vmlinux, dump)
			it := runEnv(env, "", "gdb", gdbArgs("info threads")...)
			bt := runEnv(env, "", "gdb", gdbArgs("thread apply all bt")...)
			serverRows = append(serverRows, fmt.Sprintf("| %s | %.0f MB | %s | %s | %s |", name, float64(st.Size())/1e6,
				open.time(fmt.Sprintf("%d MB RSS", open.rssKB/1024)),
				it.time(fmt.Sprintf("%d threads; %s", count(it.out, `(?m)^[* ] +\d+ +Thread `), serverShare(it.out))),
				bt.time(fmt.Sprintf("%d stacks; %s", count(bt.out, `(?m)^Thread \d+ \(Thread `), serverShare(bt.out)))))

			ps := run("", bin, "ps", vmlinux, dump)
			bta := run("", bin, "bt", "-a", vmlinux, dump)
			lg := run("", bin, "log", vmlinux, dump)
			oursWall := ps.wall + bta.wall + lg.wall
			ours := fmt.Sprintf("%.2f / %.2f / %.2f s (%d tasks, %d stacks, %d log lines)", ps.wall.Seconds(), bta.wall.Seconds(), lg.wall.Seconds(),
				count(ps.out, `(?m)^[> ] +\d+ `), count(bta.out, frame0), count(lg.out, logLine))
			if ps.failed != "" || bta.failed != "" || lg.failed != "" {
				ours, oursWall = "fails", 0
			}
			cr := run(crashInput, "crash", "-s", vmlinux, dump)
			crash := cr.time(fmt.Sprintf("%d tasks, %d stacks, %d log lines", count(cr.out, crashTask), count(cr.out, frame0), count(cr.out, logLine)))
			dg := run("", "drgn", "-q", "-c", dump, "-s", vmlinux, drgnScript)
			drgn := dg.failed
			if drgn == "" {
				m := regexp.MustCompile(`(\d+) tasks (\d+) stacks (\d+) log records`).FindStringSubmatch(dg.out)
				if m == nil {
					drgn, dg.failed = "fails (no output)", "no output"
				} else {
					drgn = dg.time(m[1] + " tasks, " + m[2] + " stacks, " + m[3] + " log records")
				}
			}
			triageRows = append(triageRows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", name, ours, crash, drgn, ratio(oursWall, cr), ratio(oursWall, dg)))

			// The seed's analysis: our one command against crash running
			// the commands a person types for it (sys, ps, kmem -i, bt -fl,
			// kmem -s, log), and kmem -s alone on both sides.
			if d == "scale/vmcore.lzo" {
				continue
			}
			fleetArgs = append(fleetArgs, dump)
			an := run("", bin, "analyze", vmlinux, dump)
			ks := run("", bin, "kmem", "-s", vmlinux, dump)
			crA := run("sys\nps\nkmem -i\nbt -fl\nkmem -s\nlog\nexit\n", "crash", "-s", vmlinux, dump)
			crK := run("kmem -s\nexit\n", "crash", "-s", vmlinux, dump)
			analyzeRows = append(analyzeRows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |", name,
				an.time(fmt.Sprintf("%d MB", an.rssKB/1024)), crA.time(fmt.Sprintf("%d MB", crA.rssKB/1024)), ratio(an.wall, crA),
				ks.time(fmt.Sprintf("%d caches", count(ks.out, `(?m)^[0-9a-f]{16} `))), crK.time(fmt.Sprintf("%d caches", count(crK.out, `(?m)^[0-9a-f]{16} `))), ratio(ks.wall, crK)))
		}

		// Types: BTF against DWARF on the same vmlinux and dump where the
		// vmlinux has BTF, DWARF alone where it has none (4.18, nobtf/).
		type typesCase struct{ label, vmlinux, dump, mode string }
		var cases []typesCase
		for _, d := range []string{"oom/vmcore.lzo", "scale/vmcore.lzo"} {
			dump := filepath.Join(dir, d)
			if !exists(dump) {
				continue
			}
			if hasBTF(vmlinux) {
				cases = append(cases, typesCase{"BTF (forced)", vmlinux, dump, "btf"}, typesCase{"DWARF (forced)", vmlinux, dump, "dwarf"})
			} else {
				cases = append(cases, typesCase{"DWARF (no BTF)", vmlinux, dump, ""})
			}
		}
		if nv, nd := filepath.Join(dir, "nobtf", "vmlinux"), filepath.Join(dir, "nobtf", "vmcore.lzo"); exists(nv) && exists(nd) {
			cases = append(cases, typesCase{"DWARF (nobtf/vmlinux: .BTF zeroed)", nv, nd, ""})
		}
		btfOpen := map[string]result{}
		type others struct{ cr, dg result }
		seen := map[string]others{}
		for _, c := range cases {
			var env []string
			if c.mode != "" {
				env = []string{"VMCORE_GDBSERVER_TYPES=" + c.mode}
			}
			source := c.mode
			if source == "" {
				source = "dwarf"
				if hasBTF(c.vmlinux) {
					source = "btf"
				}
			}
			open := openTime(env, bin, c.vmlinux, []string{c.dump})
			ps := runEnv(env, "", bin, "ps", c.vmlinux, c.dump)
			rawT, rawN := rawRead(c.vmlinux, source)
			key := c.vmlinux + "\x00" + c.dump
			o, ok := seen[key]
			if !ok {
				o.cr = run("ps\nexit\n", "crash", "-s", c.vmlinux, c.dump)
				o.dg = run("", "drgn", "-q", "-c", c.dump, "-s", c.vmlinux, drgnTasks)
				if o.dg.failed == "" && !regexp.MustCompile(`\d+ tasks`).MatchString(o.dg.out) {
					o.dg.failed = "fails (no output)"
				}
				seen[key] = o
			}
			vsBTF := "-"
			if b, ok := btfOpen[c.dump]; ok && c.mode == "dwarf" && open.failed == "" {
				vsBTF = fmt.Sprintf("%.1f× time, %+d MB", open.wall.Seconds()/b.wall.Seconds(), (open.rssKB-b.rssKB)/1024)
			}
			if c.mode == "btf" && open.failed == "" {
				btfOpen[c.dump] = open
			}
			name := filepath.Base(mustEval(dir)) + " " + filepath.Base(filepath.Dir(c.dump)) + "/" + filepath.Base(c.dump)
			drgnTasksSeen := regexp.MustCompile(`(\d+) tasks`).FindStringSubmatch(o.dg.out)
			dgText := o.dg.failed
			if dgText == "" {
				dgText = o.dg.time(fmt.Sprintf("%s tasks, %d MB", drgnTasksSeen[1], o.dg.rssKB/1024))
			}
			typesRows = append(typesRows, fmt.Sprintf("| %s | %s | %.0f MB, read in %.2f s | %s | %s | %s | %s | %s | %s | %s | %s |",
				name, c.label, float64(rawN)/1e6, rawT.Seconds(),
				open.time(fmt.Sprintf("%d MB", open.rssKB/1024)),
				ps.time(fmt.Sprintf("%d tasks, %d MB", count(ps.out, `(?m)^[> ] +\d+ `), ps.rssKB/1024)),
				vsBTF,
				o.cr.time(fmt.Sprintf("%d tasks, %d MB", count(o.cr.out, crashTask), o.cr.rssKB/1024)),
				dgText,
				ratio(open.wall, result{wall: rawT}), ratio(open.wall, o.cr), ratio(open.wall, o.dg)))
		}
	}
	// Open cost against RAM size, on synthetic sparse kdumps.
	fmt.Println("| synthetic sparse kdump, RAM described | `info` wall time | peak RSS |")
	fmt.Println("|---|---|---|")
	for _, ram := range []struct {
		name  string
		bytes uint64
	}{{"1 GiB", 1 << 30}, {"64 GiB", 64 << 30}, {"1 TiB", 1 << 40}} {
		p := filepath.Join(tmp, "sparse.kdump")
		if err := synthdump.WriteSparseKdump(p, ram.bytes); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		r := run("", bin, "info", p)
		fmt.Printf("| %s | %s | %d MB |\n", ram.name, r.time(""), r.rssKB/1024)
		os.Remove(p)
	}
	fmt.Println()
	fmt.Println("| dump | size | server start to thread list, peak RSS | gdb: info threads | gdb: thread apply all bt |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range serverRows {
		fmt.Println(r)
	}
	fmt.Println()
	fmt.Println("| dump | vmcore-gdbserver ps / bt -a / log | crash -s: ps; foreach bt; log | drgn: every task's stack + log | ours / crash | ours / drgn |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range triageRows {
		fmt.Println(r)
	}
	fmt.Println()
	fmt.Println("| dump | `analyze` | crash -s: sys; ps; kmem -i; bt -fl; kmem -s; log | ours / crash | `kmem -s` | crash: kmem -s | ours / crash |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range analyzeRows {
		fmt.Println(r)
	}
	if len(fleetArgs) > 0 {
		// The fleet path: every dump above in one run, each finding its
		// own vmlinux is not possible here (they are in no debug path),
		// so the dump's own kallsyms and BTF serve where they exist.
		for _, jobs := range []string{"1", "2"} {
			fl := runEnv([]string{"DEBUGINFOD_URLS="}, "", bin, append([]string{"analyze", "--json", "--jobs", jobs}, fleetArgs...)...)
			n := count(fl.out, `(?m)^\{`)
			ok := n - count(fl.out, `(?m)^\{[^\n]*"error":`)
			fmt.Printf("\n`analyze --json --jobs %s` over %d dumps (%d analyzed from their own kallsyms+BTF, the rest error records): %s, %.2f dumps/s, peak RSS %d MB\n",
				jobs, n, ok, fl.time(""), float64(n)/fl.wall.Seconds(), fl.rssKB/1024)
		}
	}
	fmt.Println()
	fmt.Println("| dump | types from | raw: type sections read once | serve: start to thread list, peak RSS | `ps` | DWARF vs BTF (serve) | crash -s: ps | drgn: list tasks | ours / raw | ours / crash | ours / drgn |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range typesRows {
		fmt.Println(r)
	}
}

func mustEval(p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return p
	}
	return r
}
