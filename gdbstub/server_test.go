package gdbstub

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, fmt.Sprintf(format, args...))
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

func (l *lines) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.l {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func startServer(t *testing.T, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, c: conn, r: bufio.NewReader(conn), ack: true}
}

// closedByServer reports whether the server closed c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF || (err != nil && strings.Contains(err.Error(), "reset"))
}

// Over --max-clients, silent connections make room for new ones (a flood
// of idle sockets never locks gdb out), talking sessions are never
// dropped, and when every slot talks a new connection is closed at once.
func TestServerMaxClients(t *testing.T) {
	warn := &lines{}
	srv := &Server{Target: fakeTarget{}, MaxClients: 4, Warn: warn}
	addr := startServer(t, srv)
	talking := []*client{dialClient(t, addr), dialClient(t, addr)}
	for _, c := range talking {
		if got := c.cmd("m1000,4"); got != "00010203" {
			t.Fatalf("m1000,4 = %q", got)
		}
	}
	var idle []net.Conn
	for i := 0; i < 40; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// A new client after the flood still gets a session.
	late := dialClient(t, addr)
	if got := late.cmd("m1004,4"); got != "04050607" {
		t.Fatalf("a client after the idle flood got %q", got)
	}
	for _, c := range talking {
		if got := c.cmd("m1000,4"); got != "00010203" {
			t.Fatalf("a talking session was disturbed: %q", got)
		}
	}
	dropped := 0
	for _, c := range idle {
		if closedByServer(c, 200*time.Millisecond) {
			dropped++
		}
	}
	if dropped < len(idle)-1 {
		t.Errorf("only %d of %d silent connections were dropped", dropped, len(idle))
	}
	// Every slot talking: a fifth connection is closed at once.
	fourth := dialClient(t, addr)
	if got := fourth.cmd("m1000,1"); got != "00" {
		t.Fatalf("fourth client got %q", got)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedByServer(extra, 5*time.Second) {
		t.Fatal("a connection over the cap was kept")
	}
	if !warn.has("refused client") || !warn.has("--max-clients") || !warn.has("dropped silent client") {
		t.Errorf("refusals not logged: %q", warn.all())
	}
	// A dropped session leaves the count once its goroutine has ended,
	// a moment after its client saw the close.
	deadline := time.Now().Add(5 * time.Second)
	for srv.Clients() != 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.Clients(); n != 4 {
		t.Errorf("%d sessions open, want 4", n)
	}
}

// A connection that sends nothing is dropped after HandshakeTimeout; one
// that spoke stays however long it then idles.
func TestServerHandshakeTimeout(t *testing.T) {
	warn := &lines{}
	srv := &Server{Target: fakeTarget{}, HandshakeTimeout: 300 * time.Millisecond, Warn: warn}
	addr := startServer(t, srv)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	talker := dialClient(t, addr)
	talker.cmd("m1000,1")
	start := time.Now()
	if !closedByServer(silent, 5*time.Second) {
		t.Fatal("a silent connection was kept")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("dropped after %v", d)
	}
	time.Sleep(500 * time.Millisecond)
	if got := talker.cmd("m1001,1"); got != "01" {
		t.Fatalf("a session that spoke was dropped: %q", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !warn.has("nothing received in 300ms") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !warn.has("nothing received in 300ms") {
		t.Errorf("drop not logged: %q", warn.all())
	}
}

// flakyListener fails Accept with an errno a few times before passing
// through: the descriptor exhaustion the command-line test produces for
// real under a low RLIMIT_NOFILE, here made exact.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	errno syscall.Errno
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: l.errno}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// Temporary accept errors are retried with back-off; the server keeps
// serving and says so.
func TestServerAcceptErrors(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ECONNABORTED} {
		t.Run(errno.Error(), func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			warn := &lines{}
			srv := &Server{Target: fakeTarget{}, Warn: warn}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(&flakyListener{Listener: l, fails: 5, errno: errno}) }()
			c := dialClient(t, l.Addr().String())
			if got := c.cmd("m1000,2"); got != "0001" {
				t.Fatalf("after %v: %q", errno, got)
			}
			if !warn.has("retrying") {
				t.Errorf("accept errors not logged: %q", warn.all())
			}
			l.Close()
			if err := <-done; err != nil {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}
