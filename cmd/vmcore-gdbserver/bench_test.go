package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// rspExchange sends one packet and returns the reply payload.
func rspExchange(w io.Writer, r *bufio.Reader, pkt string) (string, error) {
	var sum byte
	for i := 0; i < len(pkt); i++ {
		sum += pkt[i]
	}
	if _, err := fmt.Fprintf(w, "$%s#%02x", pkt, sum); err != nil {
		return "", err
	}
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '$' {
			break
		}
	}
	body, err := r.ReadString('#')
	if err != nil {
		return "", err
	}
	r.Discard(2)
	w.Write([]byte("+"))
	return strings.TrimSuffix(body, "#"), nil
}

// BenchmarkServeStartToThreadList: process start until the server has
// answered its first qXfer:threads:read (dump opened, vmlinux symbols and
// BTF loaded, every task list walked).
func BenchmarkServeStartToThreadList(b *testing.B) {
	for _, f := range gdbFixtures {
		b.Run(f.name, func(b *testing.B) {
			vmlinux := f.vmlinux(b)
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(cliBinary, append([]string{"serve", "--stdio", vmlinux}, f.paths(b)...)...)
				in, _ := cmd.StdinPipe()
				out, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				r := bufio.NewReader(out)
				if _, err := rspExchange(in, r, "qSupported:xmlRegisters=i386"); err != nil {
					b.Fatal(err)
				}
				reply, err := rspExchange(in, r, "qXfer:threads:read::0,fff0")
				if err != nil || !strings.Contains(reply, "<thread ") {
					b.Fatalf("threads: %q %v", reply, err)
				}
				rspExchange(in, r, "D")
				in.Close()
				cmd.Wait()
			}
		})
	}
}

// BenchmarkGDB times whole gdb 13 runs (process start to exit): `info
// threads`, and `thread apply all bt`.
func BenchmarkGDB(b *testing.B) {
	for _, f := range []gdbFixture{gdbFixtures[0], gdbFixtures[3]} {
		for _, c := range []struct{ name, cmd string }{{"info-threads", "info threads"}, {"thread-apply-all-bt", "thread apply all bt"}} {
			b.Run(f.name+"/"+c.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					runGDB(b, f, c.cmd)
				}
			})
		}
	}
}

// gdbIndexStates are the index-cache situations BenchmarkGDBIndex compares:
// the gdb subcommand with gdb's index cache off (the wrapper before it
// had one), a cold cache the session's own gdb fills, a cold cache the
// wrapper fills before the session (its default), and a warm one.
var gdbIndexStates = []struct{ name, label, mode string }{
	{"off", "no index cache", "off"},
	{"cold-session", "cold: the session writes the index", "cache"},
	{"cold-default", "cold: the index written first (default)", ""},
	{"warm", "warm: index in the cache", ""},
}

// indexWritten is the wrapper's line after it had gdb write the index.
var indexWritten = regexp.MustCompile(`index written in ([0-9.]+) s`)

// timeWrapper runs `vmcore-gdbserver gdb` in batch mode with
// XDG_CACHE_HOME=cache and one command after the setup commands pre, and
// returns the time from process start until the command's output ended
// (a marker after it), until the process exited, and the output.
func timeWrapper(b *testing.B, f gdbFixture, cache, mode string, pre []string, command string) (time.Duration, time.Duration, string) {
	b.Helper()
	args := append([]string{"gdb", f.vmlinux(b)}, f.paths(b)...)
	args = append(args, "--", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0")
	for _, p := range pre {
		args = append(args, "-ex", p)
	}
	args = append(args, "-ex", command, "-ex", `echo ==DONE==\n`)
	cmd := exec.Command(cliBinary, args...)
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache, gdbIndexEnv+"="+mode)
	pr, pw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pw.Close()
	var out strings.Builder
	var done time.Duration
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if sc.Text() == "==DONE==" && done == 0 {
			done = time.Since(start)
		}
		out.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	exit := time.Since(start)
	pr.Close()
	if err != nil || done == 0 {
		b.Fatalf("%s: %v\n%s", command, err, tail(out.String(), 30))
	}
	return done, exit, out.String()
}

// BenchmarkGDBIndex: how long the first command that needs kernel types
// waits, by the state of gdb's index cache (gdbIndexStates), in the gdb
// subcommand on the 6.1 oom dump (`ptype struct task_struct`, `info
// threads`, `p $lx_current().comm` with the kernel's gdb scripts), and in
// an IDE: cdt-gdb-adapter's variables request on frame 0 against `serve`
// (gdb started by the adapter with the cache on; cold and warm). Each
// cell is process start to the command's output, and to gdb's exit; for
// the IDE, the variables requests of frame 0, and the adapter's start to
// their answer. It prints a markdown table at the end.
func BenchmarkGDBIndex(b *testing.B) {
	requireGDB(b)
	f := gdbFixtures[0]
	script := fixtures.PathIn(b, f.dir(b), "gdb-scripts", "vmlinux-gdb.py")
	cells := map[string]string{}
	type command struct {
		name, label string
		pre         []string
		cmd         string
		check       func(string) bool
	}
	commands := []command{
		{"ptype", "`ptype struct task_struct`", nil, "ptype struct task_struct",
			func(out string) bool { return strings.Contains(out, "type = struct task_struct {") }},
		{"info-threads", "`info threads`", nil, "info threads",
			func(out string) bool { return len(parseThreads(out)) >= 10 }},
		{"lx-current-comm", "`p $lx_current().comm` (vmlinux-gdb.py)", []string{"add-auto-load-safe-path /", "source " + script}, "p $lx_current().comm",
			func(out string) bool { return printValue.MatchString(out) }},
	}
	// warmCache returns a cache directory holding the vmlinux's index.
	warmCache := func(b *testing.B) string {
		cache := b.TempDir()
		timeWrapper(b, f, cache, "", nil, "show index-cache stats")
		return cache
	}
	for _, c := range commands {
		for _, st := range gdbIndexStates {
			b.Run(c.name+"/"+st.name, func(b *testing.B) {
				var first, exit time.Duration
				var out string
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					cache := b.TempDir()
					if st.name == "warm" {
						cache = warmCache(b)
					}
					b.StartTimer()
					first, exit, out = timeWrapper(b, f, cache, st.mode, c.pre, c.cmd)
				}
				if !c.check(out) {
					b.Fatalf("%s: unexpected output:\n%s", c.cmd, tail(out, 30))
				}
				wrote := indexWritten.FindStringSubmatch(out)
				if (wrote != nil) != (st.name == "cold-default") {
					b.Fatalf("%s: the index written first: %v, want %v:\n%s", st.name, wrote != nil, st.name == "cold-default", tail(out, 30))
				}
				cell := fmt.Sprintf("%.1f s (exit %.1f s)", first.Seconds(), exit.Seconds())
				if wrote != nil {
					cell = fmt.Sprintf("%.1f s (exit %.1f s; index written in %s s of it)", first.Seconds(), exit.Seconds(), wrote[1])
				}
				cells[c.name+"/"+st.name] = cell
				b.ReportMetric(first.Seconds(), "s-to-output")
				b.ReportMetric(exit.Seconds(), "s-to-exit")
			})
		}
	}
	adapter := dapAdapter(b)
	for _, st := range []string{"cold-session", "warm"} {
		b.Run("ide-variables/"+st, func(b *testing.B) {
			var vars, total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cache := b.TempDir()
				if st == "warm" {
					cache = warmCache(b)
				}
				dir, err := gdbIndexDir(cache)
				if err != nil {
					b.Fatal(err)
				}
				addr, stop := startTCPServer(b, f)
				b.StartTimer()
				vars, total = ideVariables(b, adapter, f, addr, gdbIndexArgs(dir))
				b.StopTimer()
				stop()
				b.StartTimer()
			}
			cells["ide-variables/"+st] = fmt.Sprintf("%.2f s (%.1f s from the adapter's start)", vars.Seconds(), total.Seconds())
			b.ReportMetric(vars.Seconds(), "s-variables")
			b.ReportMetric(total.Seconds(), "s-to-variables")
		})
	}
	if len(cells) == 0 {
		return
	}
	fmt.Printf("\n| %s %s | ", filepath.Base(mustEvalSymlinks(f.dir(b))), f.files[0])
	for _, st := range gdbIndexStates {
		fmt.Printf("%s | ", st.label)
	}
	fmt.Printf("\n|---|---|---|---|---|\n")
	rows := append([]command(nil), commands...)
	rows = append(rows, command{name: "ide-variables", label: "IDE (cdt-gdb-adapter, `serve`): variables of frame 0"})
	for _, c := range rows {
		fmt.Printf("| %s |", c.label)
		for _, st := range gdbIndexStates {
			v := cells[c.name+"/"+st.name]
			if v == "" {
				v = "-"
			}
			fmt.Printf(" %s |", v)
		}
		fmt.Println()
	}
	fmt.Println()
}

func mustEvalSymlinks(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// ideVariables plays an IDE through cdt-gdb-adapter against the server at
// addr, gdb started with extra options: attach, the stopped thread's
// stack, then the variables of frame 0 (every scope), as a variables pane
// asks. It returns the time the variables requests took and the time
// from the adapter's start to their answer.
func ideVariables(b *testing.B, adapter string, f gdbFixture, addr string, gdbArgs []string) (time.Duration, time.Duration) {
	b.Helper()
	host, port, _ := strings.Cut(addr, ":")
	const quick = 5 * time.Minute
	start := time.Now()
	c := startDAP(b, adapter)
	c.request(quick, "initialize", map[string]any{"clientID": "vmcore-gdbserver-bench", "adapterID": "gdbtarget",
		"linesStartAt1": true, "columnsStartAt1": true, "pathFormat": "path", "supportsMemoryReferences": true})
	c.request(quick, "attach", map[string]any{
		"gdb": "gdb", "gdbArguments": append([]string{"-iex", "set remotetimeout 60"}, gdbArgs...), "program": f.vmlinux(b),
		"target": map[string]any{"type": "remote", "host": host, "port": port},
	})
	c.event(quick, "initialized", nil)
	c.request(quick, "configurationDone", map[string]any{})
	ev := decode[struct {
		ThreadID int `json:"threadId"`
	}](b, "stopped", c.event(quick, "stopped", nil).Body)
	body, _ := c.request(quick, "stackTrace", map[string]any{"threadId": ev.ThreadID, "startFrame": 0, "levels": 20})
	frames := decode[struct{ StackFrames []dapFrame }](b, "stackTrace", body).StackFrames
	if len(frames) == 0 {
		b.Fatal("no frames")
	}
	body, _ = c.request(quick, "scopes", map[string]any{"frameId": frames[0].ID})
	scopes := decode[struct {
		Scopes []struct {
			Name               string
			VariablesReference int `json:"variablesReference"`
		}
	}](b, "scopes", body).Scopes
	var took time.Duration
	n := 0
	for _, sc := range scopes {
		if sc.VariablesReference == 0 {
			continue
		}
		body, d := c.request(quick, "variables", map[string]any{"variablesReference": sc.VariablesReference})
		took += d
		n += len(decode[struct{ Variables []dapVariable }](b, "variables", body).Variables)
	}
	total := time.Since(start)
	if n == 0 {
		b.Fatalf("frame 0 (%s) has no variables", frames[0].Name)
	}
	c.request(quick, "disconnect", map[string]any{})
	return took, total
}
