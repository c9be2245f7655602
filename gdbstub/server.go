package gdbstub

import (
	"errors"

	"io"
	"net"
	"runtime/debug"
	"sync"
)

// Server accepts clients and gives each its own Session.
type Server struct {
	Target Target
	Log    Logger
	// OnSessionEnd, if set, receives each session's counters.
	OnSessionEnd func(who string, st Stats)

	mu      sync.Mutex
	clients int
}

// Serve accepts connections on l until it is closed.
func (s *Server) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go s.ServeConn(c, c.RemoteAddr().String())
	}
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
