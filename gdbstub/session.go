package gdbstub

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Logger receives the server's debug log (why a read failed, protocol
// trouble); nil discards it.
type Logger interface {
	Printf(format string, args ...any)
}

// Session is one client connection.
type Session struct {
	t      Target
	rw     io.ReadWriter
	rd     *reader
	log    Logger
	ack    bool
	last   []byte // last packet sent, for NAK resends
	out    []byte
	thread ThreadID // selected by Hg for g, p, m
	cont   ThreadID // selected by Hc for c and s; 0 for any
	// stopped is the thread the last stop reply named.
	stopped ThreadID
	// resumed is set while the last packet answered was a refused
	// resume: its stop reply is on the wire, so an interrupt sent while
	// the client waited for it needs no second one.
	resumed bool
	// xferKey and xferData hold the one qXfer object being read in
	// chunks; a client reads one object at a time, so one entry is all a
	// cache needs, and a new annex per packet cannot grow it.
	xferKey  string
	xferData []byte
	done     bool
	stats    Stats
	// files are the client's open vFile descriptors (at most
	// MaxOpenFiles); a nil entry is a free number.
	files []File
	// onEnd, if set, gets the counters once, as the session ends: before
	// the reply to a detach or kill, since a client may kill the server
	// process (a stdio pipe) as soon as it has that reply.
	onEnd func(Stats)
}

func (s *Session) end() {
	s.closeFiles()
	if s.onEnd != nil {
		s.onEnd(s.stats)
		s.onEnd = nil
	}
}

// Stats measure a session: packets answered, time spent building the
// replies (the server's share of a gdb command), time spent in the
// writes that send them (the transport's), and bytes sent.
type Stats struct {
	Packets  int
	Busy     time.Duration
	Write    time.Duration
	BytesOut int64
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats { return s.stats }

// NewSession serves one client over rw.
func NewSession(t Target, rw io.ReadWriter, log Logger) *Session {
	// The threads start unset (0, which no target thread is) and mean
	// the target's stop thread: asking for it here would wait for a
	// target still loading before the first packet is even read.
	return &Session{t: t, rw: rw, rd: newReader(rw), log: log, ack: true}
}

func (s *Session) logf(format string, args ...any) {
	if s.log != nil {
		s.log.Printf(format, args...)
	}
}

// Serve answers packets until the client detaches, kills, disconnects or
// the connection fails. A malformed packet is NAKed (or answered with an
// error) and the session goes on.
func (s *Session) Serve() error {
	defer s.end()
	for !s.done {
		ev, pkt, err := s.rd.next()
		if err != nil {
			if errors.Is(err, ErrChecksum) || errors.Is(err, ErrOversize) || errors.Is(err, ErrMalformed) {
				s.logf("bad packet: %v", err)
				if s.ack {
					if _, werr := s.rw.Write([]byte{'-'}); werr != nil {
						return werr
					}
				} else if errors.Is(err, ErrOversize) || errors.Is(err, ErrMalformed) {
					if werr := s.send([]byte("E01")); werr != nil {
						return werr
					}
				}
				continue
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
		switch ev {
		case evAck:
			continue
		case evNak:
			if s.last != nil {
				if _, err := s.rw.Write(s.last); err != nil {
					return err
				}
			}
			continue
		case evInterrupt:
			// The target never runs, so an interrupt is answered at
			// once: the client gets the stop it asked for. After a
			// refused resume the client already has its stop reply
			// (gdb sends 0x03 only while it waits for one); a second
			// would be read as the answer to its next packet.
			if s.resumed {
				s.resumed = false
				continue
			}
			if err := s.send(s.stopReplySignal(sigINT, s.stoppedThread())); err != nil {
				return err
			}
			continue
		}
		if s.ack {
			if _, err := s.rw.Write([]byte{'+'}); err != nil {
				return err
			}
		}
		start := time.Now()
		s.resumed = false
		reply, noReply := s.handle(pkt)
		s.stats.Packets++
		s.stats.Busy += time.Since(start)
		if s.done {
			s.end()
		}
		if noReply {
			continue
		}
		err = s.send(reply)
		if err != nil {
			return err
		}
		if bytes.Equal(pkt, []byte("QStartNoAckMode")) {
			s.ack = false
		}
	}
	return nil
}

func (s *Session) send(payload []byte) error {
	s.out = frame(s.out[:0], payload)
	s.last = s.out
	start := time.Now()
	n, err := s.rw.Write(s.out)
	s.stats.Write += time.Since(start)
	s.stats.BytesOut += int64(n)
	return err
}

// console sends an O packet (console output) before a final reply.
func (s *Session) console(text string) {
	s.send([]byte("O" + hex.EncodeToString([]byte(text))))
}

// Signals of stop replies: SIGTRAP for the crash itself (what `?`
// reports), SIGINT for a refused resume or an interrupt. gdb takes a
// SIGTRAP at an unchanged pc after a step as "not there yet" and steps
// again, forever; a SIGINT ends step, next, finish and continue at once.
const (
	sigINT  = 2
	sigTRAP = 5
)

func (s *Session) stopReply() []byte { return s.stopReplySignal(sigTRAP, s.t.StopThread()) }

// regThread is the thread g, p and m read: the one Hg or the last stop
// reply chose, else the target's stop thread.
func (s *Session) regThread() ThreadID {
	if s.thread == 0 {
		return s.t.StopThread()
	}
	return s.thread
}

// stoppedThread is the thread the last stop reply named, else the
// target's stop thread.
func (s *Session) stoppedThread() ThreadID {
	if s.stopped == 0 {
		return s.t.StopThread()
	}
	return s.stopped
}

// stopReplySignal reports a stop in tid, which also becomes the thread
// g, p and m read: a client takes the stopped thread as the current one
// and reads its registers without sending Hg first (gdb does).
func (s *Session) stopReplySignal(sig int, tid ThreadID) []byte {
	s.stopped = tid
	s.thread = tid
	r := fmt.Sprintf("T%02xthread:%x;", sig, uint64(tid))
	if d, ok := s.t.(ThreadDescriber); ok {
		if core, ok := d.ThreadCore(tid); ok {
			r += fmt.Sprintf("core:%x;", core)
		}
	}
	return []byte(r)
}

func errReply(code int) []byte { return []byte(fmt.Sprintf("E%02x", code)) }

// handle answers one packet; noReply is true for packets that get none.
func (s *Session) handle(pkt []byte) (reply []byte, noReply bool) {
	p := string(pkt)
	switch {
	case p == "?":
		return s.stopReply(), false
	case strings.HasPrefix(p, "qSupported"):
		return []byte(s.supported(p)), false
	case p == "vMustReplyEmpty":
		return nil, false
	case p == "QStartNoAckMode":
		return []byte("OK"), false
	case strings.HasPrefix(p, "H"):
		return s.setThread(p), false
	case strings.HasPrefix(p, "T"):
		tid, err := parseThreadID(p[1:])
		if err != nil || !s.t.HasThread(tid) {
			return errReply(1), false
		}
		return []byte("OK"), false
	case p == "qfThreadInfo":
		var b strings.Builder
		b.WriteByte('m')
		for i, tid := range s.t.Threads() {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%x", uint64(tid))
		}
		return []byte(b.String()), false
	case p == "qsThreadInfo":
		return []byte("l"), false
	case p == "qC":
		return []byte(fmt.Sprintf("QC%x", uint64(s.t.StopThread()))), false
	case p == "qAttached" || strings.HasPrefix(p, "qAttached:"):
		return []byte("1"), false
	case p == "qTStatus":
		return nil, false
	case strings.HasPrefix(p, "qSymbol"):
		return []byte("OK"), false
	case p == "qOffsets":
		if so, ok := s.t.(SectionOffsetter); ok {
			if r, ok := so.SectionOffsets(); ok {
				return []byte(r), false
			}
		}
		return nil, false
	case strings.HasPrefix(p, "qThreadExtraInfo,"):
		tid, err := parseThreadID(p[len("qThreadExtraInfo,"):])
		if err != nil || !s.t.HasThread(tid) {
			return errReply(1), false
		}
		text := fmt.Sprintf("thread %d", uint64(tid))
		if d, ok := s.t.(ThreadDescriber); ok {
			if e := d.ThreadExtra(tid); e != "" {
				text = e
			} else if n := d.ThreadName(tid); n != "" {
				text = n
			}
		}
		return []byte(hex.EncodeToString([]byte(text))), false
	case strings.HasPrefix(p, "qXfer:"):
		return s.qxfer(p), false
	case strings.HasPrefix(p, "vFile:"):
		return s.vfile(p[len("vFile:"):]), false
	case strings.HasPrefix(p, "qRcmd,"):
		return s.monitor(p[len("qRcmd,"):]), false
	case p == "g":
		return s.readRegisters(), false
	case strings.HasPrefix(p, "p"):
		return s.readRegister(p[1:]), false
	case strings.HasPrefix(p, "m"):
		return s.readMemory(p[1:]), false
	case strings.HasPrefix(p, "M"), strings.HasPrefix(p, "X"), strings.HasPrefix(p, "G"), strings.HasPrefix(p, "P"):
		s.logf("refused write %.20q: %v", p, ErrReadOnly)
		return errReply(1), false
	case strings.HasPrefix(p, "Z0,"), strings.HasPrefix(p, "Z1,"), strings.HasPrefix(p, "z0,"), strings.HasPrefix(p, "z1,"):
		// A breakpoint in a target that never runs is never hit, so
		// planting one is harmless: finish, until and advance then reach
		// the resume and are told why nothing runs, rather than failing
		// with "Cannot access memory" at an address that is readable.
		return []byte("OK"), false
	case strings.HasPrefix(p, "Z"), strings.HasPrefix(p, "z"):
		// Watchpoints: refused, gdb says it could not insert one.
		return errReply(1), false
	case p == "vCont?":
		return []byte("vCont;c;C;s;S"), false
	case isResume(p):
		// Nothing can run: say why, and stop at once where it was.
		s.console("vmcore-gdbserver: the target is a crash dump; it cannot run or step.\n")
		s.resumed = true
		return s.stopReplySignal(sigINT, s.resumeThread(p)), false
	case p == "D" || strings.HasPrefix(p, "D;"):
		s.done = true
		return []byte("OK"), false
	case p == "k":
		s.done = true
		return nil, true
	case strings.HasPrefix(p, "vKill"):
		s.done = true
		return []byte("OK"), false
	}
	return nil, false // unknown: the empty reply
}

func (s *Session) supported(p string) string {
	f := []string{fmt.Sprintf("PacketSize=%x", MaxPacketSize), "QStartNoAckMode+", "qXfer:threads:read+", "vContSupported+"}
	if _, ok := s.t.(TargetDescriber); ok {
		f = append(f, "qXfer:features:read+")
	}
	if e, ok := s.t.(ExecFiler); ok {
		if _, ok := e.ExecFile(); ok {
			f = append(f, "qXfer:exec-file:read+")
		}
	}
	if _, ok := s.t.(Librarian); ok {
		f = append(f, "qXfer:libraries:read+")
	}
	return strings.Join(f, ";")
}

// parseThreadID reads a thread id: hex, "-1" (all), "0" (any), or the
// multiprocess form p<pid>.<tid>.
func parseThreadID(s string) (ThreadID, error) {
	if strings.HasPrefix(s, "p") {
		if i := strings.IndexByte(s, '.'); i >= 0 {
			s = s[i+1:]
		} else {
			s = "0"
		}
	}
	if s == "-1" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return ThreadID(v), err
}

func (s *Session) setThread(p string) []byte {
	if len(p) < 2 {
		return errReply(1)
	}
	tid, err := parseThreadID(p[2:])
	if err != nil {
		return errReply(1)
	}
	if tid == 0 {
		// Hg0, Hc-1: any thread; g, p and m then read the stop thread,
		// and c and s resume any.
		if p[1] == 'c' {
			s.cont = 0
		} else if p[1] == 'g' {
			s.thread = 0
		}
		return []byte("OK")
	} else if !s.t.HasThread(tid) {
		return errReply(1)
	}
	switch p[1] {
	case 'g':
		s.thread = tid
	case 'c':
		s.cont = tid
	}
	return []byte("OK")
}

func (s *Session) readRegisters() []byte {
	regs, err := s.t.Registers(s.regThread())
	if err != nil {
		// Registers that could not be read go out as unavailable, so gdb
		// still lists the thread; only a target with no answer at all
		// gets an error.
		s.logf("registers of thread %x: %v", uint64(s.regThread()), err)
		if regs == nil {
			return errReply(1)
		}
	}
	var b []byte
	for _, r := range regs {
		b = appendReg(b, r)
	}
	return b
}

func appendReg(b []byte, r Register) []byte {
	if r.Value == nil {
		for i := 0; i < r.Size; i++ {
			b = append(b, 'x', 'x')
		}
		return b
	}
	return hex.AppendEncode(b, r.Value)
}

func (s *Session) readRegister(arg string) []byte {
	n, err := strconv.ParseUint(arg, 16, 32)
	if err != nil {
		return errReply(1)
	}
	regs, err := s.t.Registers(s.regThread())
	if err != nil && regs == nil {
		return errReply(1)
	}
	if n >= uint64(len(regs)) {
		return errReply(0x16)
	}
	return appendReg(nil, regs[n])
}

func parseAddrLen(arg string) (uint64, uint64, error) {
	comma := strings.IndexByte(arg, ',')
	if comma < 0 {
		return 0, 0, ErrMalformed
	}
	addr, err := strconv.ParseUint(arg[:comma], 16, 64)
	if err != nil {
		return 0, 0, err
	}
	n, err := strconv.ParseUint(arg[comma+1:], 16, 64)
	return addr, n, err
}

func (s *Session) readMemory(arg string) []byte {
	addr, n, err := parseAddrLen(arg)
	if err != nil {
		return errReply(1)
	}
	n = min(n, (MaxPacketSize-8)/2)
	buf := make([]byte, n)
	got, err := s.t.ReadMemory(s.regThread(), addr, buf)
	if got == 0 && n > 0 {
		s.logf("m %x,%x (thread %x): %v", addr, n, uint64(s.regThread()), err)
		return errReply(0x14)
	}
	return []byte(hex.EncodeToString(buf[:got]))
}

// qxfer serves qXfer:<object>:read:<annex>:<offset>,<length>.
func (s *Session) qxfer(p string) []byte {
	parts := strings.SplitN(p, ":", 5)
	if len(parts) != 5 || parts[2] != "read" {
		return nil
	}
	object, annex := parts[1], parts[3]
	off, length, err := parseAddrLen(parts[4])
	if err != nil {
		return errReply(0)
	}
	key := object + ":" + annex
	data := s.xferData
	if key != s.xferKey || off == 0 || data == nil {
		var ok bool
		data, ok = s.xferObject(object, annex)
		if !ok {
			return nil
		}
		s.xferKey, s.xferData = key, data
	}
	if off >= uint64(len(data)) {
		return []byte("l")
	}
	length = min(length, MaxPacketSize/2)
	end := min(uint64(len(data)), off+length)
	kind := byte('m')
	if end == uint64(len(data)) {
		kind = 'l'
	}
	return append([]byte{kind}, data[off:end]...)
}

func (s *Session) xferObject(object, annex string) ([]byte, bool) {
	switch object {
	case "features":
		if d, ok := s.t.(TargetDescriber); ok {
			return d.TargetXML(annex)
		}
	case "threads":
		return s.threadsXML(), true
	case "exec-file":
		if e, ok := s.t.(ExecFiler); ok {
			if f, ok := e.ExecFile(); ok {
				return []byte(f), true
			}
		}
	case "libraries":
		if l, ok := s.t.(Librarian); ok {
			return l.LibrariesXML(), true
		}
	}
	return nil, false
}

func (s *Session) threadsXML() []byte {
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\"?>\n<threads>\n")
	d, _ := s.t.(ThreadDescriber)
	for _, tid := range s.t.Threads() {
		fmt.Fprintf(&b, "<thread id=\"%x\"", uint64(tid))
		if d != nil {
			if core, ok := d.ThreadCore(tid); ok {
				fmt.Fprintf(&b, " core=\"%d\"", core)
			}
			if n := d.ThreadName(tid); n != "" {
				b.WriteString(" name=\"")
				b.WriteString(EscapeXML(n))
				b.WriteByte('"')
			}
			b.WriteByte('>')
			b.WriteString(EscapeXML(d.ThreadExtra(tid)))
		} else {
			b.WriteByte('>')
		}
		b.WriteString("</thread>\n")
	}
	b.WriteString("</threads>\n")
	return b.Bytes()
}

// monitorWriter turns monitor output into O packets.
type monitorWriter struct{ s *Session }

func (w monitorWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n := min(len(p)-done, MaxPacketSize/2-16)
		if err := w.s.send([]byte("O" + hex.EncodeToString(p[done:done+n]))); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// monitorKeepalive is how often a running monitor command that prints
// nothing sends an empty console packet: gdb gives up on a reply after
// remotetimeout (2 s by default) and then takes every later reply for the
// packet before it, so a slow command must never go quiet that long.
var monitorKeepalive = 500 * time.Millisecond

func (s *Session) monitor(arg string) []byte {
	cmd, err := hex.DecodeString(arg)
	if err != nil {
		return errReply(1)
	}
	m, ok := s.t.(MonitorCommander)
	if !ok {
		return nil
	}
	// The command runs beside the session, which alone writes to the
	// client: its output as it comes, keepalives while none does.
	out := make(chan []byte)
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				s.logf("monitor %q: internal error: %v\n%s", cmd, r, debug.Stack())
				done <- fmt.Errorf("internal error in monitor %q: %v", cmd, r)
			}
		}()
		done <- m.Monitor(string(cmd), chanWriter{out})
	}()
	tick := time.NewTicker(monitorKeepalive)
	defer tick.Stop()
	w := monitorWriter{s}
	for {
		select {
		case b := <-out:
			w.Write(b)
			tick.Reset(monitorKeepalive)
		case <-tick.C:
			s.send([]byte("O"))
		case err := <-done:
			if err != nil {
				w.Write([]byte(err.Error() + "\n"))
			}
			return []byte("OK")
		}
	}
}

// chanWriter hands each write to the session goroutine and waits until
// it is taken, so the command's output keeps its order.
type chanWriter struct{ ch chan<- []byte }

func (w chanWriter) Write(p []byte) (int, error) {
	w.ch <- append([]byte(nil), p...)
	return len(p), nil
}

// isResume reports whether p asks the target to run: continue and step
// (c, s, C, S, with an address or signal), vCont with any action
// (c, C, s, S, t, r range stepping), reverse execution (bc, bs) and
// the old cycle-step packets (i, I).
func isResume(p string) bool {
	if p == "" {
		return false
	}
	switch p[0] {
	case 'c', 's', 'C', 'S', 'i', 'I':
		return true
	}
	return strings.HasPrefix(p, "vCont;") || p == "bc" || p == "bs"
}

// resumeThread is the thread a refused resume stops in: the first one
// the client named (vCont;s:TID, or Hc for c and s), so that stepping a
// thread leaves the client on it; else the thread of the crash.
func (s *Session) resumeThread(p string) ThreadID {
	if rest, ok := strings.CutPrefix(p, "vCont;"); ok {
		for _, action := range strings.Split(rest, ";") {
			_, id, ok := strings.Cut(action, ":")
			if !ok {
				continue
			}
			if tid, err := parseThreadID(id); err == nil && tid != 0 && s.t.HasThread(tid) {
				return tid
			}
		}
		return s.t.StopThread()
	}
	if s.cont != 0 && s.t.HasThread(s.cont) {
		return s.cont
	}
	return s.t.StopThread()
}
