package main

// Hostile file names, neighbours and clients, against the real binary,
// the real fixtures and Debian's gdb.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// findModuleFile finds name.ko under the fixture's modules.
func findModuleFile(t *testing.T, name string) string {
	t.Helper()
	var found string
	filepath.WalkDir(fixtures.Path(t, "kernel", "modules"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == name+".ko" {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no %s.ko in the fixture modules", name)
	}
	return found
}

// loadedModules is `mod --json`'s module names.
func loadedModules(t *testing.T, vmlinux string, dumps []string) []string {
	t.Helper()
	out, stderr, code := runCLI(t, append([]string{"mod", "--json", vmlinux}, dumps...)...)
	var mods []struct{ Name string }
	if code != 0 || json.Unmarshal(out, &mods) != nil || len(mods) < 2 {
		t.Fatalf("mod --json: %d %s %s", code, out, stderr)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	return names
}

// File names that a shell would run, split or expand reach gdb and the
// server intact through `vmcore-gdbserver gdb`: nothing injected runs,
// and the session works, modules (decompressed on the way) included.
func TestGDBWrapperHostileNames(t *testing.T) {
	requireGDB(t)
	f := gdbFixtures[0]
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o700)
	// A newline and a tab alone (no character the old quoting knew) ran
	// `touch pwned-newline` through gdb's sh -c; the other names hold
	// every other construct a shell acts on.
	dump := filepath.Join(dir, "vmcore\ntouch\tpwned-newline\n")
	vmlinux := filepath.Join(dir, "vm linux 'q\" \t\\ $(touch pwned-vmlinux) `touch pwned-vmlinux2`\n; touch pwned-vmlinux3 $HOME")
	mods := filepath.Join(dir, "mods $(touch pwned-mods) ';touch\tpwned-mods2;' \" ; touch pwned-mods3 ; \"\n")
	if err := os.Symlink(f.vmlinux(t), vmlinux); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.paths(t)[0], dump); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(mods, 0o755)
	// Two loaded modules, compressed as kmod does (real zstd and xz
	// files): gdb's qXfer:libraries makes the server decompress them.
	names := loadedModules(t, f.vmlinux(t), f.paths(t))
	compressed := map[string]string{names[0]: ".zst", names[1]: ".xz"}
	for name, ext := range compressed {
		data, err := os.ReadFile(findModuleFile(t, name))
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command(map[string]string{".zst": "zstd", ".xz": "xz"}[ext], "-c", "-q")
		c.Stdin = bytes.NewReader(data)
		out, err := c.Output()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(mods, name+".ko"+ext), out, 0o644)
	}
	args := []string{"gdb", "--modules-dir", mods, vmlinux, dump, "--", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0",
		"-ex", "info threads 1", "-ex", "sharedlibrary", "-ex", "info sharedlibrary", "-ex", "p jiffies_64",
		"-ex", "p (*(struct task_struct **)((char *)&current_task + __per_cpu_offset[0]))->comm"}
	cmd := exec.Command(cliBinary, args...)
	cmd.Dir = dir // where the injected commands would create their files
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, tail(out, 40))
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "pwned") {
			t.Errorf("an injected command ran: %s exists", e.Name())
		}
	}
	ts := parseThreads(out)
	vals := printValue.FindAllStringSubmatch(out, -1)
	if len(ts) != 1 || len(vals) != 2 {
		t.Fatalf("unexpected output:\n%s", tail(out, 40))
	}
	if vals[0][1] != strconv.FormatUint(dumpU64(t, f, "jiffies_64"), 10) {
		t.Errorf("jiffies_64 %s is not the dump's", vals[0][1])
	}
	// Right only if add-symbol-file got the vmlinux with its offsets.
	if !strings.HasPrefix(vals[1][1], `"`+ts[0].name+`\000`) {
		t.Errorf("per-CPU current_task of CPU 0 is %s, thread 1 is %q", vals[1][1], ts[0].name)
	}
	for name := range compressed {
		if !regexp.MustCompile(`Yes.*/vmcore-gdbserver-modules-[^/]+/[0-9a-f]+/` + name + `\.ko`).MatchString(out) {
			t.Errorf("module %s not loaded from a decompressed copy:\n%s", name, out)
		}
	}
	// Everything temporary (frame filter, decompressed modules) is gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := os.ReadDir(tmp)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left in TMPDIR: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startServe runs `serve` with args and waits for its ready line; the
// returned channel has the exit error.
func startServe(t *testing.T, env []string, argv ...string) (*exec.Cmd, *syncBuf, chan error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	buf := &syncBuf{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			buf.add(sc.Text())
			if !once && strings.Contains(sc.Text(), "connect with:") {
				once = true
				close(ready)
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("server exited before it was ready: %v\n%s", err, buf)
	case <-time.After(3 * time.Minute):
		t.Fatalf("server not ready:\n%s", buf)
	}
	return cmd, buf, done
}

// syncBuf collects a server's stderr lines.
type syncBuf struct {
	mu    sync.Mutex
	lines []string
}

func (b *syncBuf) add(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, s)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// rspStop sends `?` over c and checks for a stop reply.
func rspStop(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("$?#3f")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for {
		b, err := r.ReadByte()
		if err != nil {
			t.Fatalf("no reply to ?: %v", err)
		}
		if b == '+' {
			continue
		}
		if b != '$' {
			t.Fatalf("reply starts with %q", b)
		}
		reply, _ := r.ReadString('#')
		if !strings.HasPrefix(reply, "T") && !strings.HasPrefix(reply, "S") {
			t.Fatalf("reply to ? is %q", reply)
		}
		return
	}
}

// --unix takes over nothing: a file, a directory, a link or a live
// server's socket at PATH is left alone with a one-line error; only a
// stale socket is replaced. A signal stops the server and removes the
// socket it made.
func TestServeUnixPath(t *testing.T) {
	f := gdbFixtures[0]
	vmlinux, dumps := f.vmlinux(t), f.paths(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "vmcore")
	os.WriteFile(file, []byte("precious evidence"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(file, link)
	sub := filepath.Join(dir, "dir")
	os.Mkdir(sub, 0o700)
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	live := filepath.Join(dir, "live.sock")
	ll, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, c := range []struct{ path, want string }{
		{file, "not a socket (a regular file)"},
		{link, "not a socket (a symbolic link)"},
		{sub, "not a socket (a directory)"},
		{fifo, "not a socket (a FIFO)"},
		{live, "another server is listening"},
	} {
		_, stderr, code := runCLI(t, append([]string{"serve", "--unix", c.path, vmlinux}, dumps...)...)
		checkOneLineError(t, stderr, code, "--unix "+c.path, c.want)
	}
	if got, _ := os.ReadFile(file); string(got) != "precious evidence" {
		t.Fatalf("the file at --unix was changed: %q", got)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link at --unix was changed: %v %v", st, err)
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Fatalf("the live server's socket was taken: %v", err)
	} else {
		c.Close()
	}

	for _, c := range []struct {
		name  string
		stale bool
		sig   syscall.Signal
	}{{"stale+SIGTERM", true, syscall.SIGTERM}, {"fresh+SIGINT", false, syscall.SIGINT}} {
		t.Run(c.name, func(t *testing.T) {
			sock := filepath.Join(dir, c.name+".sock")
			if c.stale {
				l, err := net.Listen("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				l.Close()
				if st, err := os.Lstat(sock); err != nil || st.Mode()&os.ModeSocket == 0 {
					t.Fatalf("no stale socket: %v", err)
				}
			}
			cmd, buf, done := startServe(t, nil, append([]string{cliBinary, "serve", "--unix", sock, vmlinux}, dumps...)...)
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			rspStop(t, conn)
			conn.Close()
			cmd.Process.Signal(c.sig)
			select {
			case err := <-done:
				done <- err
				if err != nil {
					t.Fatalf("exit after %v: %v\n%s", c.sig, err, buf)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("server did not stop on %v", c.sig)
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Fatalf("socket left behind after %v: %v", c.sig, err)
			}
		})
	}
}

// Out of file descriptors (RLIMIT_NOFILE 64, 100 idle connections), the
// server backs off and keeps serving: a real gdb session works, and the
// idle connections are dropped after --handshake-timeout.
func TestServeSurvivesEMFILE(t *testing.T) {
	gdb := requireGDB(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatal("prlimit (util-linux) is required: ", err)
	}
	f := gdbFixtures[0]
	vmlinux, dumps := f.vmlinux(t), f.paths(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// Soft and hard both: the Go runtime raises the soft limit to the hard.
	argv := append([]string{prlimit, "--nofile=64:64", "--", cliBinary, "serve", "--listen", addr, "--handshake-timeout", "4s", vmlinux}, dumps...)
	cmd, buf, done := startServe(t, nil, argv...)
	var idle []net.Conn
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("server exited under descriptor exhaustion: %v\n%s", err, buf)
	default:
	}
	out := runCmd(t, gdb, "-q", "-batch", "-nx", vmlinux, "-ex", "target remote "+addr, "-ex", "info threads", "-ex", "p jiffies_64")
	if len(parseThreads(out)) < 10 || printValue.FindStringSubmatch(out) == nil || printValue.FindStringSubmatch(out)[1] != strconv.FormatUint(dumpU64(t, f, "jiffies_64"), 10) {
		t.Fatalf("gdb during descriptor exhaustion:\n%s\nserver:\n%s", tail(out, 20), buf)
	}
	if !strings.Contains(buf.String(), "too many open files") || !strings.Contains(buf.String(), "retrying") {
		t.Errorf("no accept back-off logged:\n%s", buf)
	}
	// The idle ones are all gone once the handshake timeout passes.
	closed := 0
	for _, c := range idle {
		if closedByPeer(c, 15*time.Second) {
			closed++
		}
	}
	if closed != len(idle) {
		t.Errorf("%d of %d idle connections still open", len(idle)-closed, len(idle))
	}
	// And it still serves.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rspStop(t, c)
	c.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("exit: %v\n%s", err, buf)
	}
	done <- nil
}

func closedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	return err == nil || strings.Contains(err.Error(), "reset")
}

// A kdump header's nr_cpus of 2^31-1 is not printed as the CPU count:
// info says why and counts the CPU notes.
func TestInfoImplausibleNrCPUs(t *testing.T) {
	src := fixtures.Path(t, "oom", "vmcore.lzo")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var orig dumpInfo
	out, stderr, code := runCLI(t, "info", "--json", src)
	if code != 0 || json.Unmarshal(out, &orig) != nil {
		t.Fatalf("info: %d %s", code, stderr)
	}
	// disk_dump_header.nr_cpus is at offset 460 (after the utsname and
	// the 8-byte aligned timeval).
	if got := int(int32(binary.LittleEndian.Uint32(data[460:]))); got != orig.CPUs || got < 1 {
		t.Fatalf("offset 460 holds %d, info says %d cpus", got, orig.CPUs)
	}
	binary.LittleEndian.PutUint32(data[460:], 0x7fffffff)
	bad := filepath.Join(t.TempDir(), "vmcore.lzo")
	os.WriteFile(bad, data, 0o600)
	out, stderr, code = runCLI(t, "info", bad)
	if code != 0 {
		t.Fatalf("info: %d %s", code, stderr)
	}
	text := string(out)
	cpusLine := regexp.MustCompile(`(?m)^cpus:\s+(\d+)`).FindStringSubmatch(text)
	if cpusLine == nil || cpusLine[1] != strconv.Itoa(len(orig.PRStatusPIDs)) {
		t.Errorf("cpus line %q, want the %d CPU notes:\n%s", cpusLine, len(orig.PRStatusPIDs), text)
	}
	if !strings.Contains(text, bad+": header nr_cpus 2147483647 is no CPU count any kernel has") {
		t.Errorf("no note naming the file and the bad value:\n%s", text)
	}
	var js dumpInfo
	out, _, _ = runCLI(t, "info", "--json", bad)
	if err := json.Unmarshal(out, &js); err != nil || js.CPUs != len(orig.PRStatusPIDs) {
		t.Errorf("--json cpus %d (%v), want %d", js.CPUs, err, len(orig.PRStatusPIDs))
	}
}

// shellQuote's words reach a real POSIX shell as exactly one argument,
// unchanged (the `connect with:` line is pasted into shells).
func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain", "", "a b", "new\nline", "tab\there", "it's", `"dq"`, "$(touch x)", "`x`", "a;b", "back\\slash", "~user", "*?[]", "!x", "-n"} {
		out, err := exec.Command("sh", "-c", "printf '%s' "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shellQuote(%q) = %s: the shell printed %q (%v)", s, shellQuote(s), out, err)
		}
	}
}

// Errors from below that name no file get the files; ones that do are
// left alone, and the cause stays matchable.
func TestWithFiles(t *testing.T) {
	cause := errors.New("the dump carries no VMCOREINFO")
	for _, c := range []struct {
		err   error
		files []string
		want  string
	}{
		{cause, []string{"/d/vmcore"}, "/d/vmcore: the dump carries no VMCOREINFO"},
		{cause, []string{"/d/vmcore.1", "/d/vmcore.2"}, "/d/vmcore.1, /d/vmcore.2: the dump carries no VMCOREINFO"},
		{fmt.Errorf("/d/vmcore: offset 0x10: %w", cause), []string{"/d/vmcore"}, "/d/vmcore: offset 0x10: the dump carries no VMCOREINFO"},
		{cause, []string{"", "/d/vmcore"}, "/d/vmcore: the dump carries no VMCOREINFO"},
	} {
		got := withFiles(c.err, c.files...)
		if got.Error() != c.want || !errors.Is(got, cause) {
			t.Errorf("withFiles(%q, %q) = %q", c.err, c.files, got)
		}
	}
	if withFiles(nil, "x") != nil {
		t.Error("withFiles(nil) is not nil")
	}
}
