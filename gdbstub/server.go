package gdbstub

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for Server's limits.
const (
	// DefaultMaxClients is far more gdb sessions than anyone runs on one
	// dump, and far fewer than the descriptors a process has.
	DefaultMaxClients = 64
	// DefaultHandshakeTimeout: gdb sends its first packet at once.
	DefaultHandshakeTimeout = 30 * time.Second
)

// Server accepts clients and gives each its own Session.
type Server struct {
	Target Target
	// Log, if set, receives every session's protocol problems.
	Log Logger
	// Warn, if set, receives what an operator must see even without Log:
	// refused and dropped connections, accept failures (rate-limited).
	Warn Logger
	// OnSessionEnd, if set, receives each session's counters.
	OnSessionEnd func(who string, st Stats)
	// MaxClients caps the connections Serve keeps open
	// (DefaultMaxClients if 0). Over the cap a connection that has not
	// sent a byte yet is dropped to make room, or else the new one is
	// closed at once.
	MaxClients int
	// HandshakeTimeout drops a connection that sends nothing for this
	// long after it is accepted (DefaultHandshakeTimeout if 0).
	HandshakeTimeout time.Duration

	mu       sync.Mutex
	clients  int
	accepted int             // connections Serve holds open
	pending  []*acceptedConn // accepted, silent so far; oldest first
	warned   map[string]*warnState
}

type warnState struct {
	last       time.Time
	suppressed int
}

// acceptedConn is a connection from Serve: it counts against MaxClients
// until its session ends, and is "pending" until its first byte arrives.
type acceptedConn struct {
	net.Conn
	srv      *Server
	spoke    atomic.Bool
	evicted  atomic.Bool
	timedOut atomic.Bool
}

func (c *acceptedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
		c.Conn.SetReadDeadline(time.Time{})
		c.srv.mu.Lock()
		c.srv.unpend(c)
		c.srv.mu.Unlock()
	}
	var ne net.Error
	if err != nil && !c.spoke.Load() && errors.As(err, &ne) && ne.Timeout() && !c.timedOut.Swap(true) {
		// Said here, before the session ends and closes the connection.
		c.srv.warnf("silent", "dropped client %s: nothing received in %v", c.RemoteAddr(), c.srv.handshakeTimeout())
	}
	return n, err
}

// unpend removes c from the pending list; s.mu held.
func (s *Server) unpend(c *acceptedConn) {
	for i, p := range s.pending {
		if p == c {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			return
		}
	}
}

// evictOldestPending closes the oldest connection that never spoke, to
// free its slot and descriptor; s.mu held. It reports whether it did.
func (s *Server) evictOldestPending(why string) bool {
	if len(s.pending) == 0 {
		return false
	}
	old := s.pending[0]
	s.pending = s.pending[1:]
	old.evicted.Store(true)
	s.accepted--
	s.warnLocked("evict", "dropped silent client %s: %s", old.RemoteAddr(), why)
	old.Conn.Close()
	return true
}

func (s *Server) maxClients() int {
	if s.MaxClients > 0 {
		return s.MaxClients
	}
	return DefaultMaxClients
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// Serve accepts connections on l until it is closed. Running out of
// descriptors or memory does not end it: it backs off and goes on.
func (s *Server) Serve(l net.Listener) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !temporaryAcceptError(err) {
				return err
			}
			s.mu.Lock()
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				s.evictOldestPending("out of file descriptors")
			}
			s.mu.Unlock()
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.warnf("accept", "accept: %v; retrying in %v", err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.admit(c)
	}
}

// temporaryAcceptError reports errors after which accepting again can
// succeed: exhausted descriptors, buffers or memory, an aborted
// connection, an interrupted call.
func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// admit starts a session on c, or closes c if the server is full.
func (s *Server) admit(c net.Conn) {
	who := c.RemoteAddr().String()
	s.mu.Lock()
	if s.accepted >= s.maxClients() && !s.evictOldestPending(fmt.Sprintf("%d clients, the --max-clients cap", s.maxClients())) {
		s.mu.Unlock()
		// Said before the close, so whoever sees the close finds it said.
		s.warnf("refuse", "refused client %s: %d clients already, the --max-clients cap", who, s.maxClients())
		c.Close()
		return
	}
	s.accepted++
	ac := &acceptedConn{Conn: c, srv: s}
	s.pending = append(s.pending, ac)
	s.mu.Unlock()
	c.SetReadDeadline(time.Now().Add(s.handshakeTimeout()))
	go func() {
		defer func() {
			s.mu.Lock()
			if !ac.evicted.Load() {
				s.unpend(ac)
				s.accepted--
			}
			s.mu.Unlock()
		}()
		s.ServeConn(ac, who)
	}()
}

// ServeConn runs one session on rw and closes it when the session ends.
// A panic in a session ends that session only and is logged.
func (s *Server) ServeConn(rw io.ReadWriteCloser, who string) {
	s.mu.Lock()
	s.clients++
	s.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			s.logf("client %s: internal error: %v\n%s", who, r, debug.Stack())
		}
		rw.Close()
		s.mu.Lock()
		s.clients--
		s.mu.Unlock()
	}()
	s.logf("client %s connected", who)
	sess := NewSession(s.Target, rw, s.Log)
	if s.OnSessionEnd != nil {
		sess.onEnd = func(st Stats) { s.OnSessionEnd(who, st) }
	}
	err := sess.Serve()
	if err != nil {
		s.logf("client %s: %v", who, err)
	}
	s.logf("client %s gone", who)
}

func (s *Server) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log.Printf(format, args...)
	}
}

// warnf prints to Warn at most once a second per kind, so a flood of
// connections cannot flood the operator's terminal; the next line says
// how many were left out.
func (s *Server) warnf(kind, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.warnLocked(kind, format, args...)
}

func (s *Server) warnLocked(kind, format string, args ...any) {
	if s.Warn == nil {
		s.logf(format, args...)
		return
	}
	if s.warned == nil {
		s.warned = map[string]*warnState{}
	}
	w := s.warned[kind]
	if w == nil {
		w = &warnState{}
		s.warned[kind] = w
	}
	if now := time.Now(); now.Sub(w.last) >= time.Second {
		msg := fmt.Sprintf(format, args...)
		if w.suppressed > 0 {
			msg += fmt.Sprintf(" (and %d more like it)", w.suppressed)
		}
		s.Warn.Printf("%s", msg)
		w.last, w.suppressed = now, 0
		return
	}
	w.suppressed++
}

// Clients returns how many sessions are open.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients
}

// StdioConn joins a reader and a writer (stdin and stdout for
// `target remote | vmcore-gdbserver serve --stdio ...`).
type StdioConn struct {
	io.Reader
	io.Writer
}

// Close does nothing: the process ends with its session.
func (StdioConn) Close() error { return nil }
