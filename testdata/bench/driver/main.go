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
	"fmt"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/synthdump"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
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
func run(stdin string, name string, args ...string) result {
	var rs []result
	for i := 0; i < 3; i++ {
		cmd := exec.Command(name, args...)
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

// openTime measures process start to the server's answer to
// qXfer:threads:read, and the process's peak RSS.
func openTime(bin, vmlinux string, dumps []string) result {
	pkt := "qXfer:threads:read::0,fff0"
	var sum byte
	for i := 0; i < len(pkt); i++ {
		sum += pkt[i]
	}
	var rs []result
	for i := 0; i < 3; i++ {
		cmd := exec.Command(bin, append([]string{"serve", "--stdio", vmlinux}, dumps...)...)
		in, _ := cmd.StdinPipe()
		outp, _ := cmd.StdoutPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return result{failed: err.Error()}
		}
		fmt.Fprintf(in, "$%s#%02x", pkt, sum)
		r := bufio.NewReader(outp)
		var wall time.Duration
		for {
			c, err := r.ReadByte()
			if err != nil {
				break
			}
			if c == '#' {
				wall = time.Since(start)
				break
			}
		}
		in.Write([]byte("$D#44"))
		in.Close()
		cmd.Wait()
		res := result{wall: wall}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.rssKB = ru.Maxrss
		}
		rs = append(rs, res)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].wall < rs[j].wall })
	return rs[1]
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: driver BIN FIXTURE-DIR...")
		os.Exit(2)
	}
	bin, _ := filepath.Abs(os.Args[1])
	tmp, _ := os.MkdirTemp("", "bench")
	defer os.RemoveAll(tmp)
	drgnScript := filepath.Join(tmp, "triage.py")
	os.WriteFile(drgnScript, []byte(`from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_printk_records
n = 0
for t in for_each_task(prog):
    prog.stack_trace(t)
    n += 1
print(n, "tasks", len(get_printk_records(prog)), "log records")
`), 0o644)
	crashInput := "ps\nforeach bt\nlog\nexit\n"

	var serverRows, triageRows []string
	for _, dir := range os.Args[2:] {
		vmlinux := filepath.Join(dir, "kernel", "vmlinux")
		release := filepath.Base(mustEval(dir))
		for _, d := range []string{"oom/vmcore.elf", "oom/vmcore.lzo", "qemu57/vmcore.elf", "qemu57/vmcore.kdump-zlib", "modcrash/vmcore.lzo", "scale/vmcore.lzo"} {
			dump := filepath.Join(dir, d)
			if !exists(dump) {
				continue
			}
			st, _ := os.Stat(dump)
			name := release + " " + d
			open := openTime(bin, vmlinux, []string{dump})
			gdbArgs := func(c string) []string {
				return []string{"-q", "-batch", "-nx", vmlinux, "-ex", "target remote | " + bin + " serve --stdio --stats " + vmlinux + " " + dump, "-ex", c}
			}
			it := run("", "gdb", gdbArgs("info threads")...)
			bt := run("", "gdb", gdbArgs("thread apply all bt")...)
			serverRows = append(serverRows, fmt.Sprintf("| %s | %.0f MB | %.2f s, %d MB RSS | %s | %s |", name, float64(st.Size())/1e6,
				open.wall.Seconds(), open.rssKB/1024,
				it.time(fmt.Sprintf("%d threads; %s", count(it.out, `(?m)^[* ] +\d+ +Thread `), serverShare(it.out))),
				bt.time(fmt.Sprintf("%d stacks; %s", count(bt.out, `(?m)^Thread \d+ \(Thread `), serverShare(bt.out)))))

			ps := run("", bin, "ps", vmlinux, dump)
			bta := run("", bin, "bt", "-a", vmlinux, dump)
			lg := run("", bin, "log", vmlinux, dump)
			ours := fmt.Sprintf("%.2f / %.2f / %.2f s (%d tasks, %d log lines)", ps.wall.Seconds(), bta.wall.Seconds(), lg.wall.Seconds(),
				count(ps.out, `(?m)^[> ] +\d+ `), strings.Count(lg.out, "\n"))
			if ps.failed != "" || bta.failed != "" || lg.failed != "" {
				ours = "fails"
			}
			cr := run(crashInput, "crash", "-s", vmlinux, dump)
			crash := cr.time(fmt.Sprintf("%d tasks, %d stacks", count(cr.out, `(?m)^[> ] +\d+ +-?\d+ +\d+ +[0-9a-f]{16} `), count(cr.out, `(?m)^PID: `)))
			dg := run("", "drgn", "-q", "-c", dump, "-s", vmlinux, drgnScript)
			drgn := dg.failed
			if drgn == "" {
				m := regexp.MustCompile(`(\d+) tasks (\d+) log records`).FindStringSubmatch(dg.out)
				if m == nil {
					drgn = "fails (no output)"
				} else {
					drgn = dg.time(m[1] + " tasks, " + m[2] + " log records")
				}
			}
			triageRows = append(triageRows, fmt.Sprintf("| %s | %s | %s | %s |", name, ours, crash, drgn))
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
	fmt.Println("| dump | vmcore-gdbserver ps / bt -a / log | crash -s: ps; foreach bt; log | drgn: every task's stack + log |")
	fmt.Println("|---|---|---|---|")
	for _, r := range triageRows {
		fmt.Println(r)
	}
	_ = strconv.Itoa
}

func mustEval(p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return p
	}
	return r
}
