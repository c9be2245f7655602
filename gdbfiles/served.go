package gdbfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
)

// Served is the fixed set of files gdb may read through the connection
// (vFile): the vmlinux and the module objects the server itself opened,
// each under the one name the server gave gdb. A file is served from the
// descriptor the server opened, so a name that is or becomes a link is
// never resolved again; every other name is refused, whatever it would
// resolve to (../, a link out of a module directory, /proc/self/...):
// names are compared as exact strings, with no normalization that could
// make two differ in what they open.
type Served struct {
	mu     sync.Mutex
	files  map[string]*os.File
	closed bool
}

// MaxServed bounds the set (and the descriptors it holds): far above the
// modules a kernel loads.
const MaxServed = 4096

// ErrNotServed is the refusal of a name outside the set.
var ErrNotServed = fmt.Errorf("not a file this server opened for gdb: %w", fs.ErrPermission)

// Add serves f (opened read-only by the caller, now owned by s) as name.
// A name already served keeps its first file.
func (s *Served) Add(name string, f *os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.files[name]; dup {
		f.Close()
		return nil
	}
	if s.closed || len(s.files) >= MaxServed {
		f.Close()
		if s.closed {
			return fmt.Errorf("serving %s: closed", name)
		}
		return fmt.Errorf("serving %s: already %d files", name, MaxServed)
	}
	if s.files == nil {
		s.files = map[string]*os.File{}
	}
	s.files[name] = f
	return nil
}

// Has reports whether name is served.
func (s *Served) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[name]
	return ok
}

// Open returns a new handle on the file served as name. Closing the
// handle leaves the file open for the next one.
func (s *Served) Open(name string) (*Handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[name]
	if !ok {
		return nil, ErrNotServed
	}
	return &Handle{f: f}, nil
}

// Close closes every served file.
func (s *Served) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files = nil
	return errors.Join(errs...)
}

// Handle is one opening of a served file: reads at offsets (pread, so
// handles and sessions share the descriptor safely) and its status.
type Handle struct {
	f      *os.File
	closed atomic.Bool
}

func (h *Handle) ReadAt(p []byte, off int64) (int, error) {
	if h.closed.Load() {
		return 0, os.ErrClosed
	}
	return h.f.ReadAt(p, off)
}

func (h *Handle) Stat() (fs.FileInfo, error) {
	if h.closed.Load() {
		return nil, os.ErrClosed
	}
	return h.f.Stat()
}

// Close ends this handle; the served file stays open.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return os.ErrClosed
	}
	return nil
}
