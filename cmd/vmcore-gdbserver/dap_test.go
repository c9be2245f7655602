package main

// An IDE session end to end: cdt-gdb-adapter (the Debug Adapter Protocol
// server behind VS Code's and Theia's CDT `gdbtarget` debug type, from
// npm) drives Debian's gdb 13 against `serve` on a real dump, and a small
// DAP client here plays the IDE.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// dapAdapter returns the adapter's entry point, installed by `make
// dap-adapter` (testdata/dap/adapter.sh) into the cache beside the
// fixtures. Missing, the test fails: it is never skipped.
func dapAdapter(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is required to run cdt-gdb-adapter (Debian: apt-get install nodejs npm; `make dap-adapter` installs both)")
	}
	out, err := exec.Command("bash", "../../testdata/dap/adapter.sh", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("cdt-gdb-adapter is not installed: %s(run `make dap-adapter`)", out)
	}
	return strings.TrimSpace(string(out))
}

type dapMessage struct {
	Seq        int             `json:"seq"`
	Type       string          `json:"type"`
	Command    string          `json:"command,omitempty"`
	Event      string          `json:"event,omitempty"`
	RequestSeq int             `json:"request_seq,omitempty"`
	Success    bool            `json:"success,omitempty"`
	Message    string          `json:"message,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
	Arguments  any             `json:"arguments,omitempty"`
}

// dapClient speaks DAP (Content-Length framed JSON) over the adapter's
// stdio.
type dapClient struct {
	t      testing.TB
	cmd    *exec.Cmd
	in     io.WriteCloser
	exited chan struct{}

	mu      sync.Mutex
	seq     int
	waiting map[int]chan dapMessage
	events  chan dapMessage
	log     bytes.Buffer // every message, for failures
}

func startDAP(t testing.TB, adapter string) *dapClient {
	cmd := exec.Command("node", adapter)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &dapClient{t: t, cmd: cmd, in: in, exited: make(chan struct{}), waiting: map[int]chan dapMessage{}, events: make(chan dapMessage, 4096)}
	go func() {
		c.read(bufio.NewReader(out))
		cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			c.mu.Lock()
			t.Logf("DAP traffic (tail):\n%s\nadapter stderr:\n%s", tail(c.log.String(), 60), tail(stderr.String(), 20))
			c.mu.Unlock()
		}
	})
	return c
}

func (c *dapClient) read(r *bufio.Reader) {
	for {
		n := -1
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		if n < 0 || n > 64<<20 {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		var m dapMessage
		if err := json.Unmarshal(body, &m); err != nil {
			continue
		}
		c.mu.Lock()
		fmt.Fprintf(&c.log, "<- %.600s\n", body)
		switch m.Type {
		case "response":
			if ch := c.waiting[m.RequestSeq]; ch != nil {
				ch <- m
				delete(c.waiting, m.RequestSeq)
			}
		case "event":
			c.events <- m
		case "request": // reverse requests (runInTerminal...): refused
			c.sendLocked(dapMessage{Type: "response", RequestSeq: m.Seq, Command: m.Command, Message: "not supported"})
		}
		c.mu.Unlock()
	}
}

func (c *dapClient) sendLocked(m dapMessage) {
	c.seq++
	m.Seq = c.seq
	b, _ := json.Marshal(m)
	fmt.Fprintf(&c.log, "-> %.600s\n", b)
	fmt.Fprintf(c.in, "Content-Length: %d\r\n\r\n%s", len(b), b)
}

// request sends a request and waits up to d for its response, failing
// the test on a timeout or an error response. It returns the body and
// how long the answer took.
func (c *dapClient) request(d time.Duration, command string, args any) (json.RawMessage, time.Duration) {
	c.t.Helper()
	ch := make(chan dapMessage, 1)
	c.mu.Lock()
	c.waiting[c.seq+1] = ch
	c.sendLocked(dapMessage{Type: "request", Command: command, Arguments: args})
	c.mu.Unlock()
	start := time.Now()
	select {
	case m := <-ch:
		if !m.Success {
			c.t.Fatalf("%s failed: %s %s", command, m.Message, m.Body)
		}
		return m.Body, time.Since(start)
	case <-c.exited:
		c.t.Fatalf("%s: the adapter exited", command)
	case <-time.After(d):
		c.t.Fatalf("%s: no response within %v", command, d)
	}
	return nil, 0
}

// event waits up to d for the named event; events before it are
// passed to seen (if set).
func (c *dapClient) event(d time.Duration, name string, seen func(dapMessage)) dapMessage {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-c.events:
			if m.Event == name {
				return m
			}
			if seen != nil {
				seen(m)
			}
		case <-c.exited:
			c.t.Fatalf("waiting for %s: the adapter exited", name)
		case <-deadline:
			c.t.Fatalf("no %s event within %v", name, d)
		}
	}
}

func (c *dapClient) drainEvents(seen func(dapMessage)) {
	for {
		select {
		case m := <-c.events:
			seen(m)
		default:
			return
		}
	}
}

func decode[T any](t testing.TB, what string, b json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v: %s", what, err, b)
	}
	return v
}

type dapThread struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

type dapFrame struct {
	ID                          int    `json:"id"`
	Name                        string `json:"name"`
	InstructionPointerReference string `json:"instructionPointerReference"`
}

type dapVariable struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// panicComm is the comm of the task that panicked, from the kernel's own
// report in the fixture's serial log ("CPU: 0 PID: 255 Comm: stress ...").
func panicComm(t testing.TB, dir string) string {
	data, err := os.ReadFile(fixtures.PathIn(t, dir, "oom", "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "Kernel panic - not syncing")
	if i < 0 {
		t.Fatal("console log has no panic")
	}
	m := regexp.MustCompile(`PID: \d+ Comm: (\S+)`).FindStringSubmatch(s[i:])
	if m == nil {
		t.Fatal("console log names no panicking task")
	}
	return m[1]
}

// dumpBytes reads n bytes at a kernel symbol straight from the dump.
func dumpBytes(t testing.TB, f gdbFixture, sym string, n int) (uint64, []byte) {
	d, err := vmcore.Open(f.paths(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	v, err := symbols.Open(f.vmlinux(t))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	vi, _ := d.VMCOREINFO()
	addr, err := v.Address(sym, vi.KernelOffset)
	if err != nil {
		t.Fatal(err)
	}
	k, err := d.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := k.Read(b, addr); err != nil {
		t.Fatal(err)
	}
	return addr, b
}

// The IDE flow: attach, threads, stacks of the crashed and of sleeping
// tasks, variables, evaluate, memory, disassembly, then every resume the
// IDE offers (each must end in a stopped event at once: a dump cannot
// run), pause and disconnect, each within its deadline.
func TestDAPSession(t *testing.T) {
	requireGDB(t)
	adapter := dapAdapter(t)
	f := gdbFixtures[0]
	dir := f.dir(t)
	comm := panicComm(t, dir)
	consoleFns := consoleTrace(t, dir)
	addr, stop := startTCPServer(t, f)
	defer stop()
	host, port, _ := strings.Cut(addr, ":")
	vmlinux := fixtures.Path(t, "kernel", "vmlinux")

	// Every request but attach (gdb reads the 590 MB vmlinux then) must
	// answer within a few seconds; a resume that loops never would.
	const quick = 15 * time.Second
	timings := map[string]time.Duration{}

	// gdb 13 builds its symbol index of the vmlinux in the background,
	// and the first request that needs it (the IDE's variables: 47-103 s
	// measured here, all in gdb) waits for it. An IDE user sets gdb's
	// index cache once (README); so does the test, in the cache beside
	// the adapter, and builds the index first if it is not there.
	cacheRoot, _, _ := strings.Cut(adapter, "/npm/")
	index := []string{"-iex", "set remotetimeout 60", "-iex", "set index-cache enabled on", "-iex", "set index-cache directory " + cacheRoot + "/gdb-index"}
	start := time.Now()
	runCmd(t, requireGDB(t), append(append([]string{"-q", "-batch", "-nx"}, index...), vmlinux, "-ex", "info types ^vmcore_gdbserver_no_such_type$")...)
	t.Logf("gdb index ready in %v", time.Since(start).Round(time.Millisecond))
	c := startDAP(t, adapter)
	var outputs strings.Builder
	collect := func(m dapMessage) {
		if m.Event == "output" {
			var o struct{ Output string }
			json.Unmarshal(m.Body, &o)
			outputs.WriteString(o.Output)
		}
	}
	c.request(quick, "initialize", map[string]any{"clientID": "vmcore-gdbserver-test", "adapterID": "gdbtarget",
		"linesStartAt1": true, "columnsStartAt1": true, "pathFormat": "path", "supportsMemoryReferences": true})
	_, timings["attach"] = c.request(5*time.Minute, "attach", map[string]any{
		"gdb": "gdb", "gdbArguments": index, "program": vmlinux, "verbose": os.Getenv("DAP_LOG") != "", "logFile": os.Getenv("DAP_LOG"),
		"target": map[string]any{"type": "remote", "host": host, "port": port},
	})
	c.event(quick, "initialized", collect)
	_, timings["configurationDone"] = c.request(quick, "configurationDone", map[string]any{})
	// The adapter resumes after attaching; the server stops it at once.
	ev := decode[struct {
		Reason   string
		ThreadID int `json:"threadId"`
	}](t, "stopped", c.event(quick, "stopped", collect).Body)

	body, d := c.request(quick, "threads", nil)
	timings["threads"] = d
	threads := decode[struct{ Threads []dapThread }](t, "threads", body).Threads
	var panicThread *dapThread
	for i, th := range threads {
		if strings.Contains(th.Name, comm) && ev.ThreadID == th.ID {
			panicThread = &threads[i]
		}
	}
	if len(threads) < 10 || panicThread == nil {
		t.Fatalf("threads %v: the stopped thread %d is not the panicking %q", threads, ev.ThreadID, comm)
	}

	stack := func(tid int) []dapFrame {
		t.Helper()
		body, d := c.request(quick, "stackTrace", map[string]any{"threadId": tid, "startFrame": 0, "levels": 100})
		timings["stackTrace"] = max(timings["stackTrace"], d)
		return decode[struct{ StackFrames []dapFrame }](t, "stackTrace", body).StackFrames
	}
	frames := stack(panicThread.ID)
	var names []string
	for _, fr := range frames {
		names = append(names, fr.Name)
	}
	if !isSubsequence(consoleFns, names) {
		t.Errorf("stack of the panicking thread\n  %v\ndoes not follow the kernel's own trace\n  %v", names, consoleFns)
	}
	// Sleeping tasks (threads after the CPUs' ones) start in the scheduler.
	ncpu := 0
	psOut, _, _ := runCLI(t, append([]string{"ps", "--json", vmlinux}, f.paths(t)...)...)
	var ps []struct {
		PID int
		CPU int
	}
	json.Unmarshal(psOut, &ps)
	for _, p := range ps {
		if p.PID == 0 {
			ncpu++
		}
	}
	if ncpu == 0 || len(threads) < ncpu+3 {
		t.Fatalf("%d CPUs, %d threads", ncpu, len(threads))
	}
	for _, th := range threads[ncpu : ncpu+3] {
		fs := stack(th.ID)
		if len(fs) < 3 || (fs[0].Name != "context_switch" && fs[0].Name != "__schedule" && fs[0].Name != "schedule") {
			t.Errorf("thread %v: stack %v does not start in the scheduler", th, fs)
		}
	}

	// Variables of the crashed frame: its locals, and registers whose
	// rip is the frame's pc.
	body, timings["scopes"] = c.request(quick, "scopes", map[string]any{"frameId": frames[0].ID})
	scopes := decode[struct {
		Scopes []struct {
			Name               string
			VariablesReference int `json:"variablesReference"`
		}
	}](t, "scopes", body).Scopes
	vars := map[string][]dapVariable{}
	for _, sc := range scopes {
		if sc.VariablesReference == 0 {
			continue
		}
		body, d := c.request(quick, "variables", map[string]any{"variablesReference": sc.VariablesReference})
		timings["variables"] = max(timings["variables"], d)
		vars[sc.Name] = decode[struct{ Variables []dapVariable }](t, "variables", body).Variables
	}
	rip := ""
	for _, v := range vars["Registers"] {
		if v.Name == "rip" {
			rip = v.Value
		}
	}
	if len(vars["Local"]) == 0 || !strings.Contains(rip, frames[0].InstructionPointerReference) {
		t.Errorf("variables of %s: %v; rip %q, want the pc %s", frames[0].Name, vars, rip, frames[0].InstructionPointerReference)
	}

	// evaluate gives the dump's value.
	body, timings["evaluate"] = c.request(quick, "evaluate", map[string]any{"expression": "jiffies_64", "frameId": frames[0].ID, "context": "repl"})
	res := decode[struct{ Result string }](t, "evaluate", body).Result
	if want := strconv.FormatUint(dumpU64(t, f, "jiffies_64"), 10); res != want {
		t.Errorf("evaluate jiffies_64 = %q, the dump holds %s", res, want)
	}

	// readMemory gives the dump's bytes.
	bannerAddr, banner := dumpBytes(t, f, "linux_banner", 64)
	body, timings["readMemory"] = c.request(quick, "readMemory", map[string]any{"memoryReference": fmt.Sprintf("0x%x", bannerAddr), "count": len(banner)})
	mem := decode[struct{ Data string }](t, "readMemory", body)
	got, err := base64.StdEncoding.DecodeString(mem.Data)
	if err != nil || !bytes.Equal(got, banner) || !bytes.HasPrefix(got, []byte("Linux version ")) {
		t.Errorf("readMemory of linux_banner: %q, the dump holds %q", got, banner)
	}

	// disassemble at the crashed thread's pc.
	pc := frames[0].InstructionPointerReference
	body, timings["disassemble"] = c.request(quick, "disassemble", map[string]any{"memoryReference": pc, "instructionCount": 8})
	insns := decode[struct {
		Instructions []struct{ Address, Instruction string }
	}](t, "disassemble", body).Instructions
	atPC := false
	for _, in := range insns {
		a, _ := strconv.ParseUint(strings.TrimPrefix(in.Address, "0x"), 16, 64)
		p, _ := strconv.ParseUint(strings.TrimPrefix(pc, "0x"), 16, 64)
		atPC = atPC || (a == p && in.Instruction != "")
	}
	if len(insns) < 8 || !atPC {
		t.Errorf("disassemble at %s: %v", pc, insns)
	}

	// Every resume ends in a stop at once, in the thread it was asked of,
	// with the server's reason in the console.
	c.drainEvents(collect)
	for _, step := range []struct {
		command string
		args    map[string]any
	}{
		{"continue", nil},
		{"next", nil},
		{"stepIn", nil},
		{"stepOut", nil},
		{"next", map[string]any{"granularity": "instruction"}},
		{"stepIn", map[string]any{"granularity": "instruction"}},
	} {
		args := map[string]any{"threadId": panicThread.ID}
		for k, v := range step.args {
			args[k] = v
		}
		name := step.command
		if step.args != nil {
			name += "/instruction"
		}
		start := time.Now()
		c.request(quick, step.command, args)
		st := decode[struct {
			ThreadID int `json:"threadId"`
		}](t, "stopped", c.event(quick, "stopped", collect).Body)
		timings[name] = time.Since(start)
		if st.ThreadID != panicThread.ID {
			t.Errorf("%s %v stopped in thread %d, not %d", step.command, step.args, st.ThreadID, panicThread.ID)
		}
		if fs := stack(panicThread.ID); len(fs) == 0 || fs[0].InstructionPointerReference != pc {
			t.Errorf("after %s %v the pc is %v, was %s", step.command, step.args, fs, pc)
		}
	}
	_, timings["pause"] = c.request(quick, "pause", map[string]any{"threadId": panicThread.ID})
	c.drainEvents(collect)
	if !strings.Contains(outputs.String(), "cannot run or step") {
		t.Errorf("the IDE's console never said why nothing runs:\n%s", outputs.String())
	}

	// Disconnect: answered at once, gdb leaves the server; the IDE then
	// closes the adapter's input and it ends.
	_, timings["disconnect"] = c.request(quick, "disconnect", map[string]any{})
	for gone := false; !gone; {
		var o struct{ Output string }
		json.Unmarshal(c.event(quick, "output", nil).Body, &o)
		gone = strings.Contains(o.Output, "gdb exited")
	}
	c.in.Close()
	select {
	case <-c.exited:
	case <-time.After(quick):
		t.Errorf("the adapter did not end within %v of disconnect", quick)
	}
	var keys []string
	for k, v := range timings {
		keys = append(keys, fmt.Sprintf("%s %v", k, v.Round(time.Millisecond)))
	}
	sort.Strings(keys)
	t.Logf("timings: %s", strings.Join(keys, ", "))
}

// An IDE session (cdt-gdb-adapter, no program given) on a dump alone with
// no vmlinux to be found: gdb takes the server's symbol object as its
// executable; the threads are named, the panicking thread is the stopped
// one, a sleeping thread's stack starts in the scheduler, and evaluate
// gives the dump's jiffies_64 and init_task's command.
func TestDAPWithoutDebugInfo(t *testing.T) {
	requireGDB(t)
	adapter := dapAdapter(t)
	f := gdbFixtures[0]
	dump := f.paths(t)[0]
	comm := panicComm(t, f.dir(t))
	addr, stop := startTCPServerWith(t, []string{"DEBUGINFOD_URLS=", "XDG_CACHE_HOME=" + t.TempDir()}, []string{dump})
	defer stop()
	host, port, _ := strings.Cut(addr, ":")
	const quick = 30 * time.Second
	c := startDAP(t, adapter)
	c.request(quick, "initialize", map[string]any{"clientID": "vmcore-gdbserver-test", "adapterID": "gdbtarget",
		"linesStartAt1": true, "columnsStartAt1": true, "pathFormat": "path", "supportsMemoryReferences": true})
	c.request(2*time.Minute, "attach", map[string]any{
		"gdb": "gdb", "gdbArguments": []string{"-iex", "set remotetimeout 60"},
		"target": map[string]any{"type": "remote", "host": host, "port": port},
	})
	c.event(quick, "initialized", nil)
	c.request(quick, "configurationDone", map[string]any{})
	ev := decode[struct {
		ThreadID int `json:"threadId"`
	}](t, "stopped", c.event(quick, "stopped", nil).Body)
	body, _ := c.request(quick, "threads", nil)
	threads := decode[struct{ Threads []dapThread }](t, "threads", body).Threads
	var stopped, sleeper *dapThread
	for i, th := range threads {
		if th.ID == ev.ThreadID {
			stopped = &threads[i]
		}
		if strings.HasPrefix(th.Name, "kthreadd ") {
			sleeper = &threads[i]
		}
	}
	if len(threads) < 10 || stopped == nil || !strings.Contains(stopped.Name, comm) || sleeper == nil {
		t.Fatalf("threads %v: stopped %v (want %q), kthreadd %v", threads, stopped, comm, sleeper)
	}
	body, _ = c.request(quick, "stackTrace", map[string]any{"threadId": sleeper.ID, "startFrame": 0, "levels": 20})
	fs := decode[struct{ StackFrames []dapFrame }](t, "stackTrace", body).StackFrames
	if len(fs) < 3 || fs[0].Name != "__schedule" || fs[1].Name != "schedule" {
		t.Errorf("kthreadd's stack %v does not start in the scheduler", fs)
	}
	for expr, want := range map[string]string{
		"jiffies_64":        strconv.FormatUint(dumpU64(t, f, "jiffies_64"), 10),
		"init_task.comm[0]": `115 's'`, // "swapper/0"; an array is a variable to expand
	} {
		body, _ := c.request(quick, "evaluate", map[string]any{"expression": expr, "frameId": fs[0].ID, "context": "repl"})
		if res := decode[struct{ Result string }](t, "evaluate", body).Result; !strings.HasPrefix(res, want) {
			t.Errorf("evaluate %s = %q, want %s...", expr, res, want)
		}
	}
	c.request(quick, "disconnect", map[string]any{})
}
