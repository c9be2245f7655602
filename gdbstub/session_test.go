package gdbstub

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTarget has three threads and 64 KiB of memory at 0x1000 whose byte
// at a is byte(a).
type fakeTarget struct{}

func (fakeTarget) Threads() []ThreadID          { return []ThreadID{7, 1, 0x400001} }
func (fakeTarget) StopThread() ThreadID         { return 7 }
func (fakeTarget) HasThread(t ThreadID) bool    { return t == 7 || t == 1 || t == 0x400001 }
func (fakeTarget) ThreadName(t ThreadID) string { return fmt.Sprintf("task<%d>&\"", t) }
func (fakeTarget) ThreadExtra(t ThreadID) string {
	return fmt.Sprintf("pid %d", t)
}
func (fakeTarget) ThreadCore(t ThreadID) (int, bool) { return int(t % 2), true }
func (fakeTarget) Registers(t ThreadID) ([]Register, error) {
	return []Register{{Value: []byte{byte(t), 0, 0, 0, 0, 0, 0, 0}, Size: 8}, {Size: 4}}, nil
}
func (fakeTarget) ReadMemory(t ThreadID, addr uint64, p []byte) (int, error) {
	for i := range p {
		a := addr + uint64(i)
		if a < 0x1000 || a >= 0x11000 {
			return i, fmt.Errorf("unmapped 0x%x", a)
		}
		p[i] = byte(a)
	}
	return len(p), nil
}
func (fakeTarget) TargetXML(annex string) ([]byte, bool) {
	if annex == "target.xml" {
		return []byte(strings.Repeat("<target>#$}*</target>", 50)), true
	}
	return nil, false
}

// client is a minimal RSP client over a pipe.
type client struct {
	t   *testing.T
	c   net.Conn
	r   *bufio.Reader
	ack bool
}

// newClient connects a client to a new session over loopback TCP (a
// synchronous net.Pipe would deadlock when both ends write at once, which
// real sockets buffer).
func newClient(t *testing.T) (*client, chan error) { return newClientFor(t, fakeTarget{}) }

func newClientFor(t *testing.T, target Target) (*client, chan error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- NewSession(target, b, nil).Serve(); b.Close() }()
	t.Cleanup(func() { a.Close() })
	return &client{t: t, c: a, r: bufio.NewReader(a), ack: true}, done
}

func (c *client) raw(s string) {
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads one packet (skipping acks), checks its checksum and undoes
// escapes.
func (c *client) recv() string {
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			c.t.Fatal(err)
		}
		if b == '+' || b == '-' {
			continue
		}
		if b != '$' {
			c.t.Fatalf("unexpected byte %q", b)
		}
		break
	}
	data, err := c.r.ReadBytes('#')
	if err != nil {
		c.t.Fatal(err)
	}
	data = data[:len(data)-1]
	var cs [2]byte
	io.ReadFull(c.r, cs[:])
	var sum byte
	for _, x := range data {
		sum += x
	}
	if fmt.Sprintf("%02x", sum) != string(cs[:]) {
		c.t.Fatalf("bad checksum from stub on %q", data)
	}
	if c.ack {
		c.raw("+")
	}
	out, err := decodePayload(data)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(out)
}

func (c *client) cmd(p string) string {
	c.raw(string(frame(nil, []byte(p))))
	return c.recv()
}

func TestPackets(t *testing.T) {
	c, _ := newClient(t)
	for _, tc := range []struct{ in, want string }{
		{"qSupported:multiprocess+;xmlRegisters=i386", "PacketSize=20000;QStartNoAckMode+;qXfer:threads:read+;vContSupported+;qXfer:features:read+"},
		{"vMustReplyEmpty", ""},
		{"?", "T05thread:7;core:1;"},
		{"qC", "QC7"},
		{"qfThreadInfo", "m7,1,400001"},
		{"qsThreadInfo", "l"},
		{"qAttached", "1"},
		{"T1", "OK"},
		{"T2", "E01"},
		{"Hg1", "OK"},
		{"g", "0100000000000000xxxxxxxx"},
		{"p0", "0100000000000000"},
		{"p1", "xxxxxxxx"},
		{"p9", "E16"},
		{"Hgp1.400001", "OK"},
		{"g", "0100000000000000xxxxxxxx"},
		{"Hg0", "OK"},
		{"m1000,4", "00010203"},
		{"m10ffe,4", "feff"},
		{"m0,4", "E14"},
		{"M1000,1:00", "E01"},
		{"X1000,0:", "E01"},
		{"Z0,1000,1", "OK"},
		{"z0,1000,1", "OK"},
		{"Z1,1000,1", "OK"},
		{"Z2,1000,8", "E01"},
		{"Z4,1000,8", "E01"},
		{"qThreadExtraInfo,1", hex.EncodeToString([]byte("pid 1"))},
		{"qOffsets", ""},
		{"qRcmd,68656c70", ""},
		{"qSymbol::", "OK"},
		{"qTStatus", ""},
		{"vCont?", "vCont;c;C;s;S"},
		{"unknown-packet", ""},
	} {
		if got := c.cmd(tc.in); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestQXferChunksAndEscapes(t *testing.T) {
	c, _ := newClient(t)
	want, _ := fakeTarget{}.TargetXML("target.xml")
	var got []byte
	for off := 0; ; {
		r := c.cmd(fmt.Sprintf("qXfer:features:read:target.xml:%x,%x", off, 100))
		if r == "" || (r[0] != 'm' && r[0] != 'l') {
			t.Fatalf("reply %q", r)
		}
		got = append(got, r[1:]...)
		off += len(r) - 1
		if r[0] == 'l' {
			break
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("target.xml differs:\n%q\n%q", got, want)
	}
	if r := c.cmd("qXfer:features:read:other.xml:0,100"); r != "" {
		t.Fatalf("unknown annex: %q", r)
	}
	x := c.cmd("qXfer:threads:read::0,ffff")
	for _, s := range []string{`<thread id="7" core="1" name="task&lt;7&gt;&amp;&quot;">pid 7</thread>`, `<thread id="400001"`} {
		if !strings.Contains(x, s) {
			t.Fatalf("threads XML lacks %q:\n%s", s, x)
		}
	}
}

func TestFraming(t *testing.T) {
	c, _ := newClient(t)
	// Bad checksum: NAK, and the session goes on.
	c.raw("$qC#00")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := c.r.ReadByte(); b != '-' {
		t.Fatalf("bad checksum answered %q, want '-'", b)
	}
	if got := c.cmd("qC"); got != "QC7" {
		t.Fatalf("after a bad packet: %q", got)
	}
	// A packet cut short by a new '$' is dropped; the new one is served.
	c.raw("$m10")
	if got := c.cmd("qC"); got != "QC7" {
		t.Fatalf("after a truncated packet: %q", got)
	}
	// Escapes and run-length encoding on input.
	c.raw(string(frameRaw("m1}\x1000,4")))
	if got := c.recv(); got != "00010203" {
		t.Fatalf("escaped input: %q", got)
	}
	c.raw(string(frameRaw("m10* ,4"))) // '*' ' ' repeats '0' three more times: m10000,4
	if got := c.recv(); got != "00010203" {
		t.Fatalf("run-length input: %q", got)
	}
	// Noise between packets is ignored.
	c.raw("garbage\x00\xff")
	if got := c.cmd("qC"); got != "QC7" {
		t.Fatalf("after noise: %q", got)
	}
	// NAK makes the stub resend its last packet.
	c.raw(string(frame(nil, []byte("qC"))))
	if got := c.recv(); got != "QC7" {
		t.Fatal(got)
	}
	c.raw("-")
	if got := c.recv(); got != "QC7" {
		t.Fatalf("resend after NAK: %q", got)
	}
	// An oversized packet (1 MiB) is refused, the next one served.
	c.raw("$" + strings.Repeat("a", 1<<20) + "#00")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := c.r.ReadByte(); b != '-' {
		t.Fatalf("oversized answered %q", b)
	}
	if got := c.cmd("qC"); got != "QC7" {
		t.Fatalf("after oversized: %q", got)
	}
	// No-ack mode: the stub stops sending '+'.
	if got := c.cmd("QStartNoAckMode"); got != "OK" {
		t.Fatal(got)
	}
	c.ack = false
	c.raw(string(frame(nil, []byte("qC"))))
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := c.r.ReadByte(); b != '$' {
		t.Fatalf("no-ack mode: got %q before the reply", b)
	}
	c.r.UnreadByte()
	if got := c.recv(); got != "QC7" {
		t.Fatal(got)
	}
}

// frameRaw frames an already-encoded payload (escapes kept as given).
func frameRaw(p string) []byte {
	var sum byte
	for i := 0; i < len(p); i++ {
		sum += p[i]
	}
	return []byte(fmt.Sprintf("$%s#%02x", p, sum))
}

func TestRLEDecode(t *testing.T) {
	got, err := decodePayload([]byte("0* "))
	if err != nil || string(got) != "0000" {
		t.Fatalf("rle: %q %v", got, err)
	}
	got, err = decodePayload([]byte("x}]y"))
	if err != nil || string(got) != "x}y" {
		t.Fatalf("escape: %q %v", got, err)
	}
	for _, bad := range []string{"}", "*a", "a*"} {
		if _, err := decodePayload([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestDetachAndKill(t *testing.T) {
	for _, p := range []string{"D", "vKill;1"} {
		c, done := newClient(t)
		if got := c.cmd(p); got != "OK" {
			t.Fatalf("%s: %q", p, got)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not end the session", p)
		}
	}
	c, done := newClient(t)
	c.raw(string(frame(nil, []byte("k"))))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("k did not end the session")
	}
}

// Many clients at once; one that sends garbage and vanishes harms none.
func TestServerClients(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Target: fakeTarget{}}
	go srv.Serve(l)
	defer l.Close()
	bad, _ := net.Dial("tcp", l.Addr().String())
	bad.Write([]byte("$$$###\x03garbage$m1000,ffffffff#zz"))
	bad.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			c := &client{t: t, c: conn, r: bufio.NewReader(conn), ack: true}
			for j := 0; j < 10; j++ {
				if got := c.cmd("m1000,10"); got != "000102030405060708090a0b0c0d0e0f" {
					errs <- fmt.Errorf("got %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func FuzzSession(f *testing.F) {
	f.Add([]byte("$qSupported#37$g#67$m1000,10#f1"))
	f.Add([]byte("+$qXfer:threads:read::0,10#00\x03$QStartNoAckMode#b0$m1*\"0,4#00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		s := NewSession(fakeTarget{}, struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), &out}, nil)
		s.Serve()
	})
}

func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte("0* }]"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := decodePayload(in)
		if err == nil && len(out) > MaxPacketSize+len(in) {
			t.Fatalf("expanded to %d bytes", len(out))
		}
	})
}

// A hundred clients at once, with others vanishing in the middle of a
// large reply: every well-behaved client gets right answers, and every
// session ends (no goroutine or memory left behind).
func TestHundredClientsAndVanishing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Target: fakeTarget{}, MaxClients: 128} // more than the 100 at once
	go srv.Serve(l)
	defer l.Close()
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 20; i++ { // vanish mid-reply
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			c.Write(frame(nil, []byte("QStartNoAckMode")))
			c.Write(frame(nil, []byte("m1000,10000")))
			c.Write(frame(nil, []byte("qXfer:threads:read::0,ffff")))
			c.Close()
		}()
	}
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			c := &client{t: t, c: conn, r: bufio.NewReader(conn), ack: true}
			for j := 0; j < 20; j++ {
				addr := 0x1000 + uint64(i*64+j)
				got := c.cmd(fmt.Sprintf("m%x,4", addr))
				want := fmt.Sprintf("%02x%02x%02x%02x", byte(addr), byte(addr+1), byte(addr+2), byte(addr+3))
				if got != want {
					errs <- fmt.Errorf("client %d: m%x = %q, want %q", i, addr, got, want)
					return
				}
			}
			c.cmd("D")
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Clients() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := srv.Clients(); n != 0 {
		t.Fatalf("%d sessions still open", n)
	}
	if g := runtime.NumGoroutine(); g > base+5 {
		t.Fatalf("%d goroutines, %d before", g, base)
	}
}

// Every packet that would run the target is refused at once: a console
// line saying why, then a SIGINT stop (a SIGTRAP at the same pc makes gdb
// step again forever) in the thread the client resumed.
func TestResumeRefused(t *testing.T) {
	for _, tc := range []struct {
		setup []string // packets sent first
		in    string
		tid   string
	}{
		{nil, "c", "7"},
		{nil, "c1000", "7"},
		{nil, "s", "7"},
		{nil, "s1000", "7"},
		{nil, "C02", "7"},
		{nil, "C0b;1000", "7"},
		{nil, "S05", "7"},
		{nil, "S05;1000", "7"},
		{[]string{"Hc1"}, "s", "1"},
		{[]string{"Hc1", "Hc-1"}, "c", "7"},
		{[]string{"Hcp1.400001"}, "c", "400001"},
		{nil, "vCont;c", "7"},
		{nil, "vCont;s:1", "1"},
		{nil, "vCont;s:p1.400001;c", "400001"},
		{nil, "vCont;c:p1.-1", "7"},
		{nil, "vCont;r1000,1010:1;c", "1"},
		{nil, "vCont;C02:1", "1"},
		{nil, "vCont;S05:400001;c:1", "400001"},
		{nil, "vCont;s:99", "7"}, // no such thread: the crash's
		{nil, "vCont;t", "7"},
		{nil, "bc", "7"},
		{nil, "bs", "7"},
		{nil, "i", "7"},
		{nil, "I", "7"},
	} {
		c, _ := newClient(t)
		for _, p := range tc.setup {
			if got := c.cmd(p); got != "OK" {
				t.Fatalf("%s: %q", p, got)
			}
		}
		start := time.Now()
		c.raw(string(frame(nil, []byte(tc.in))))
		o := c.recv()
		msg, err := hex.DecodeString(strings.TrimPrefix(o, "O"))
		if !strings.HasPrefix(o, "O") || err != nil || !strings.Contains(string(msg), "cannot run or step") {
			t.Errorf("%v %s: %q, want a console line saying why", tc.setup, tc.in, o)
			continue
		}
		want := fmt.Sprintf("T02thread:%s;core:%s;", tc.tid, map[string]string{"7": "1", "1": "1", "400001": "1"}[tc.tid])
		if got := c.recv(); got != want {
			t.Errorf("%v %s: stop reply %q, want %q", tc.setup, tc.in, got, want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v", tc.in, d)
		}
		// The session goes on.
		if got := c.cmd("qC"); got != "QC7" {
			t.Errorf("%s: after the resume qC = %q", tc.in, got)
		}
	}
	// A stop makes its thread the one registers are read from, as the
	// client assumes: after Hg1 and a continue that stops in thread 7, g
	// gives thread 7's registers.
	c, _ := newClient(t)
	for _, p := range []string{"Hg1", "g"} {
		c.cmd(p)
	}
	c.raw(string(frame(nil, []byte("vCont;c"))))
	c.recv()
	if got := c.recv(); got != "T02thread:7;core:1;" {
		t.Fatalf("continue: %q", got)
	}
	if got := c.cmd("g"); got != "0700000000000000xxxxxxxx" {
		t.Fatalf("g after a stop in thread 7: %q", got)
	}
	// vCont? does not offer what is refused anyway.
	c, _ = newClient(t)
	if got := c.cmd("vCont?"); got != "vCont;c;C;s;S" {
		t.Errorf("vCont? = %q", got)
	}
}

// An interrupt byte is answered with a stop reply, in ack and no-ack
// mode, with no resume pending; one that follows a refused resume (the
// client sent it while waiting for the stop it has already been sent)
// gets no second stop, which the client would take for the answer to
// its next packet.
func TestInterrupt(t *testing.T) {
	c, _ := newClient(t)
	c.raw("\x03")
	if got := c.recv(); got != "T02thread:7;core:1;" {
		t.Fatalf("interrupt on a fresh session: %q", got)
	}
	if got := c.cmd("Hg1"); got != "OK" {
		t.Fatal(got)
	}
	c.raw("\x03")
	if got := c.recv(); got != "T02thread:7;core:1;" {
		t.Fatalf("interrupt after a packet: %q", got)
	}
	// Resume thread 1, then interrupt: one stop only, for thread 1.
	c.raw(string(frame(nil, []byte("vCont;s:1"))))
	c.recv()
	if got := c.recv(); got != "T02thread:1;core:1;" {
		t.Fatalf("step of thread 1: %q", got)
	}
	c.raw("\x03")
	if got := c.cmd("qC"); got != "QC7" {
		t.Fatalf("after resume and interrupt, the next reply is %q, want qC's", got)
	}
	// A later interrupt names the thread of the last stop.
	c.raw("\x03")
	if got := c.recv(); got != "T02thread:1;core:1;" {
		t.Fatalf("interrupt after the step: %q", got)
	}
	if got := c.cmd("QStartNoAckMode"); got != "OK" {
		t.Fatal(got)
	}
	c.ack = false
	c.raw("\x03")
	if got := c.recv(); !strings.HasPrefix(got, "T02thread:") {
		t.Fatalf("interrupt in no-ack mode: %q", got)
	}
	if got := c.cmd("qC"); got != "QC7" {
		t.Fatalf("after the interrupt: %q", got)
	}
}

// Detach ends the session at once, in ack and no-ack mode, while the
// client keeps its end open; nothing after it is read.
func TestDetachImmediate(t *testing.T) {
	for _, noack := range []bool{false, true} {
		for _, p := range []string{"D", "D;1", "vKill;1"} {
			c, done := newClient(t)
			if noack {
				if got := c.cmd("QStartNoAckMode"); got != "OK" {
					t.Fatal(got)
				}
				c.ack = false
			}
			start := time.Now()
			c.raw(string(frame(nil, []byte(p))) + string(frame(nil, []byte("qC"))))
			if got := c.recv(); got != "OK" {
				t.Fatalf("%s: %q", p, got)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("%s (no-ack %v) did not end the session", p, noack)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s took %v", p, d)
			}
			// The server closed its end: no reply to the qC after it.
			c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if b, err := c.r.ReadByte(); err == nil && b != '+' {
				t.Errorf("%s: a byte %q after detach", p, b)
			}
		}
	}
}

// bigTarget serves a 10 KB target description for every annex, as a
// hostile client asking for a new annex per packet would need.
type bigTarget struct{ fakeTarget }

func (bigTarget) TargetXML(annex string) ([]byte, bool) {
	return []byte(annex + strings.Repeat("<x/>", 2500)), true
}

// qXfer keeps no copy per annex: 20,000 packets each naming a new annex
// (10 KB each, 200 MB if kept) leave the session's heap where it was,
// and chunked reads of one object still join up.
func TestQXferCacheBounded(t *testing.T) {
	var in bytes.Buffer
	const n = 20000
	for i := 0; i < n; i++ {
		in.Write(frame(nil, []byte(fmt.Sprintf("qXfer:features:read:a%d.xml:0,100", i))))
	}
	in.Write(frame(nil, []byte("qXfer:threads:read::0,10")))
	s := NewSession(bigTarget{}, struct {
		io.Reader
		io.Writer
	}{&in, io.Discard}, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.stats.Packets != n+1 {
		t.Fatalf("%d packets answered", s.stats.Packets)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("the session's heap grew by %d bytes over %d annexes", grew, n)
	}
	runtime.KeepAlive(s)

	// Interleaved reads of two objects in chunks both come out whole.
	c, _ := newClientFor(t, bigTarget{})
	read := func(annex string, off int) string {
		return c.cmd(fmt.Sprintf("qXfer:features:read:%s:%x,%x", annex, off, 4000))
	}
	want := map[string]string{}
	got := map[string]string{}
	for _, a := range []string{"one.xml", "two.xml"} {
		x, _ := bigTarget{}.TargetXML(a)
		want[a] = string(x)
	}
	for off := 0; off < 12000; off += 4000 {
		for _, a := range []string{"one.xml", "two.xml"} {
			r := read(a, off)
			if r == "" || (r[0] != 'm' && r[0] != 'l') {
				t.Fatalf("%s at %x: %q", a, off, r)
			}
			got[a] += r[1:]
		}
	}
	for a := range want {
		if got[a] != want[a] {
			t.Errorf("%s read in chunks differs (%d bytes, want %d)", a, len(got[a]), len(want[a]))
		}
	}
}

// monitorTarget writes through fmt as monitor commands do: every Write
// must report all of p, or fmt fails with "short write".
type monitorTarget struct{ fakeTarget }

func (monitorTarget) Monitor(cmd string, out io.Writer) error {
	text := "help text\n"
	if cmd == "big" {
		text = strings.Repeat("0123456789abcdef", MaxPacketSize/16) // several O packets
	}
	n, err := fmt.Fprint(out, text)
	if err != nil {
		return err
	}
	if n != len(text) {
		return fmt.Errorf("wrote %d of %d", n, len(text))
	}
	return nil
}

func TestMonitorOutput(t *testing.T) {
	c, _ := newClientFor(t, monitorTarget{})
	for _, cmd := range []string{"help", "", "big"} {
		c.raw(string(frame(nil, []byte("qRcmd,"+hex.EncodeToString([]byte(cmd))))))
		var out strings.Builder
		for {
			r := c.recv()
			if r == "OK" {
				break
			}
			b, err := hex.DecodeString(strings.TrimPrefix(r, "O"))
			if !strings.HasPrefix(r, "O") || err != nil {
				t.Fatalf("monitor %q: %q", cmd, r)
			}
			out.Write(b)
		}
		w := "help text\n"
		if cmd == "big" {
			w = strings.Repeat("0123456789abcdef", MaxPacketSize/16)
		}
		if out.String() != w {
			t.Errorf("monitor %q printed %d bytes %.40q, want %d bytes", cmd, out.Len(), out.String(), len(w))
		}
	}
}

// slowMonitor is a monitor command that computes for a while, prints,
// computes again and prints; or panics.
type slowMonitor struct{ fakeTarget }

func (slowMonitor) Monitor(cmd string, out io.Writer) error {
	if cmd == "panic" {
		panic("boom")
	}
	time.Sleep(1200 * time.Millisecond)
	fmt.Fprint(out, "first\n")
	time.Sleep(1200 * time.Millisecond)
	fmt.Fprint(out, "second\n")
	return nil
}

// gdb waits remotetimeout (2 s) for each packet of a monitor command's
// reply, and then takes later replies for earlier packets: a slow command
// keeps the connection busy with empty console packets, and its output
// still arrives whole and in order. A panic in a command ends that
// command with a message, not the server.
func TestMonitorKeepalive(t *testing.T) {
	c, _ := newClientFor(t, slowMonitor{})
	c.raw(string(frame(nil, []byte("qRcmd,"+hex.EncodeToString([]byte("slow"))))))
	var out strings.Builder
	last := time.Now()
	keepalives := 0
	for {
		r := c.recv()
		if gap := time.Since(last); gap > time.Second {
			t.Errorf("%v without a packet", gap)
		}
		last = time.Now()
		if r == "OK" {
			break
		}
		if r == "O" {
			keepalives++
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(r, "O"))
		if !strings.HasPrefix(r, "O") || err != nil {
			t.Fatalf("%q", r)
		}
		out.Write(b)
	}
	if out.String() != "first\nsecond\n" || keepalives < 2 {
		t.Errorf("output %q with %d keepalives", out.String(), keepalives)
	}
	c.raw(string(frame(nil, []byte("qRcmd,"+hex.EncodeToString([]byte("panic"))))))
	var msg strings.Builder
	for r := c.recv(); r != "OK"; r = c.recv() {
		b, _ := hex.DecodeString(strings.TrimPrefix(r, "O"))
		msg.Write(b)
	}
	if !strings.Contains(msg.String(), "internal error") {
		t.Errorf("panic reported as %q", msg.String())
	}
	if r := c.cmd("?"); !strings.HasPrefix(r, "T05") {
		t.Errorf("after the panic: %q", r)
	}
}

// loadingTarget is a target still loading: anything that needs its
// threads waits for ready.
type loadingTarget struct {
	fakeTarget
	ready chan struct{}
}

func (l loadingTarget) StopThread() ThreadID { <-l.ready; return l.fakeTarget.StopThread() }
func (l loadingTarget) Threads() []ThreadID  { <-l.ready; return l.fakeTarget.Threads() }

// gdb waits 2 s for each reply: the packets of its handshake that need
// no kernel are answered while the target still loads.
func TestHandshakeWhileLoading(t *testing.T) {
	target := loadingTarget{ready: make(chan struct{})}
	c, _ := newClientFor(t, target)
	for _, p := range []string{"qSupported:multiprocess+;xmlRegisters=i386", "vMustReplyEmpty", "Hg0", "qXfer:features:read:target.xml:0,fff"} {
		done := make(chan string, 1)
		go func() { done <- c.cmd(p) }()
		select {
		case r := <-done:
			if p == "Hg0" && r != "OK" {
				t.Errorf("%s: %q", p, r)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s is not answered while the target loads", p)
		}
	}
	close(target.ready)
	if r := c.cmd("?"); !strings.HasPrefix(r, "T05thread:7;") {
		t.Errorf("? after loading: %q", r)
	}
	if r := c.cmd("g"); strings.HasPrefix(r, "E") {
		t.Errorf("g after loading: %q", r)
	}
}
