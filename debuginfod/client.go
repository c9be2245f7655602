package debuginfod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/privdir"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// Kind is what is asked for a build id.
type Kind int

const (
	Debuginfo  Kind = iota // the file with DWARF (for a kernel: vmlinux itself)
	Executable             // the loadable object
)

func (k Kind) String() string {
	switch k {
	case Debuginfo:
		return "debuginfo"
	case Executable:
		return "executable"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Sentinel errors, wrapped with the build id, the servers and the reason.
var (
	ErrNotFound      = errors.New("no server gave it")
	ErrNoServers     = errors.New("DEBUGINFOD_URLS is not set")
	ErrTooLarge      = errors.New("file exceeds the size cap")
	ErrWrongBuildID  = errors.New("file has another build id")
	ErrBadBuildID    = errors.New("not a hex build id")
	ErrUnsafeCache   = privdir.ErrUnsafe
	ErrStalled       = errors.New("no data for too long")
	errShortDownload = errors.New("connection ended early")
)

// DefaultMaxSize bounds one download: far above any vmlinux with debug
// information (Debian's is 590 MB, RHEL's about 900 MB).
const DefaultMaxSize = 4 << 30

// DefaultTimeout is how long a server may send nothing (before its reply
// starts, or in the middle of it) before the attempt is given up; the
// same default, and the same variable DEBUGINFOD_TIMEOUT, as elfutils'
// client. A server unpacking a vmlinux from a package archive can take
// tens of seconds before it answers.
const DefaultTimeout = 90 * time.Second

// Client fetches files by build id. The zero value is not usable: use
// FromEnv or fill URLs and CacheDir.
type Client struct {
	URLs     []string      // server base URLs, tried in order
	CacheDir string        // private directory of fetched files
	MaxSize  int64         // DefaultMaxSize if 0
	Timeout  time.Duration // DefaultTimeout if 0: the longest silence
	// Progress, if set, gets a running report of each download: a
	// redrawn bar when it is a terminal, else a line when a download
	// starts and one when it ends.
	Progress io.Writer
	HTTP     *http.Client // http.DefaultClient's transport if nil

	mu       sync.Mutex
	inflight map[string]*call
}

type call struct {
	done chan struct{}
	path string
	err  error
}

// FromEnv makes a client of the servers in DEBUGINFOD_URLS (separated by
// spaces) with its cache in the user's cache directory
// ($XDG_CACHE_HOME/vmcore-gdbserver/debuginfod); ok is false when the
// variable names no server.
func FromEnv() (c *Client, ok bool) {
	urls := strings.Fields(os.Getenv("DEBUGINFOD_URLS"))
	if len(urls) == 0 {
		return nil, false
	}
	c = &Client{URLs: urls}
	if dir, err := os.UserCacheDir(); err == nil {
		c.CacheDir = filepath.Join(dir, "vmcore-gdbserver", "debuginfod")
	}
	if s := os.Getenv("DEBUGINFOD_TIMEOUT"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			c.Timeout = time.Duration(n) * time.Second
		}
	}
	return c, true
}

// Error says which file of which build id could not be had, from where,
// and why.
type Error struct {
	BuildID string
	Kind    Kind
	Servers []string
	Err     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("debuginfod: %s of build id %s: %v", e.Kind, e.BuildID, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ValidBuildID accepts what a GNU build id note holds, written in hex:
// an even number of digits, at most 256 (a server would refuse more).
func ValidBuildID(id string) bool {
	if len(id) < 2 || len(id) > 256 || len(id)%2 != 0 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Cached returns the cached file for the id if it is there.
func (c *Client) Cached(buildID string, kind Kind) (string, bool) {
	id := strings.ToLower(buildID)
	if !ValidBuildID(id) || c.CacheDir == "" {
		return "", false
	}
	p := filepath.Join(c.CacheDir, id, kind.String())
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Geteuid() {
		return "", false
	}
	if checkDir(c.CacheDir) != nil || checkDir(filepath.Dir(p)) != nil {
		return "", false
	}
	return p, true
}

// Fetch returns the path of the file of that build id and kind: from the
// cache, or downloaded from the first server that has it. Concurrent
// calls for one file share one download. name, if not empty, names the
// file in the progress report (e.g. "vmlinux 6.1.0-57-cloud-amd64").
func (c *Client) Fetch(ctx context.Context, buildID string, kind Kind, name string) (string, error) {
	id := strings.ToLower(buildID)
	fail := func(err error) (string, error) {
		return "", &Error{BuildID: buildID, Kind: kind, Servers: c.URLs, Err: err}
	}
	if !ValidBuildID(id) {
		return fail(ErrBadBuildID)
	}
	if p, ok := c.Cached(id, kind); ok {
		return p, nil
	}
	if len(c.URLs) == 0 {
		return fail(ErrNoServers)
	}
	key := id + "/" + kind.String()
	c.mu.Lock()
	if c.inflight == nil {
		c.inflight = map[string]*call{}
	}
	if cl, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		<-cl.done
		return cl.path, cl.err
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()
	cl.path, cl.err = c.fetch(ctx, id, kind, name)
	close(cl.done)
	c.mu.Lock()
	delete(c.inflight, key)
	c.mu.Unlock()
	if cl.err != nil {
		return fail(cl.err)
	}
	return cl.path, nil
}

func (c *Client) fetch(ctx context.Context, id string, kind Kind, name string) (string, error) {
	if c.CacheDir == "" {
		return "", fmt.Errorf("%w: no cache directory (set XDG_CACHE_HOME or HOME)", ErrUnsafeCache)
	}
	if err := mkPrivateDirs(c.CacheDir); err != nil {
		return "", err
	}
	dir := filepath.Join(c.CacheDir, id)
	if err := mkPrivateDirs(dir); err != nil {
		return "", err
	}
	var errs serverErrors
	for _, base := range c.URLs {
		p, err := c.download(ctx, base, dir, id, kind, name)
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("%w (%w)", ErrNotFound, errs)
}

// serverErrors are the reasons each server gave, on one line.
type serverErrors []error

func (e serverErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e serverErrors) Unwrap() []error { return e }

func (c *Client) maxSize() int64 {
	if c.MaxSize > 0 {
		return c.MaxSize
	}
	return DefaultMaxSize
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// download fetches one file from one server into dir and returns its
// final path.
func (c *Client) download(ctx context.Context, base, dir, id string, kind Kind, name string) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + "/buildid/" + id + "/" + kind.String())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%s: not an http or https URL", base)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog cancels the request when the server is silent too long:
	// before the headers, and between any two reads of the body.
	silence := c.timeout()
	watchdog := time.AfterFunc(silence, func() { cancel(fmt.Errorf("%w (%v)", ErrStalled, silence)) })
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("%s: %w", u, err)
	}
	req.Header.Set("User-Agent", "vmcore-gdbserver")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, below
		}
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrStalled) {
			err = cause
		}
		return "", fmt.Errorf("%s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", base, resp.Status)
	}
	max := c.maxSize()
	if resp.ContentLength > max {
		return "", fmt.Errorf("%s: %w: %d bytes announced, cap %d", base, ErrTooLarge, resp.ContentLength, max)
	}
	tmp, err := os.CreateTemp(dir, ".part-")
	if err != nil {
		return "", fmt.Errorf("cache %s: %w", dir, err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bar := newProgress(c.Progress, name, kind, id, u.Host, resp.ContentLength)
	n, err := copyWatched(tmp, resp.Body, max, watchdog, silence, bar)
	bar.done(n, err)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrStalled) {
			err = cause
		}
		return "", fmt.Errorf("%s: after %d bytes: %w", base, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("%s: %w: %d of %d bytes", base, errShortDownload, n, resp.ContentLength)
	}
	got, err := symbols.ELFBuildID(tmp)
	if err != nil {
		return "", fmt.Errorf("%s: the reply is not an ELF file with a build id: %w", base, err)
	}
	if got != id {
		return "", fmt.Errorf("%s: %w: %s", base, ErrWrongBuildID, got)
	}
	if err := tmp.Chmod(0o400); err != nil {
		return "", fmt.Errorf("cache %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("cache %s: %w", tmp.Name(), err)
	}
	final := filepath.Join(dir, kind.String())
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("cache %s: %w", final, err)
	}
	keep = true
	return final, nil
}

// copyWatched copies at most max bytes, re-arming the watchdog after each
// read that brought data.
func copyWatched(w io.Writer, r io.Reader, max int64, watchdog *time.Timer, silence time.Duration, bar *progress) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			watchdog.Reset(silence)
			if n+int64(k) > max {
				return n, fmt.Errorf("%w (%d bytes)", ErrTooLarge, max)
			}
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
			bar.update(n)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// mkPrivateDirs makes dir and its missing parents 0700 and accepts dir
// only if it is this user's alone (privdir).
func mkPrivateDirs(dir string) error {
	if err := privdir.MkdirAll(dir); err != nil {
		return fmt.Errorf("cache %s: %w", dir, err)
	}
	return nil
}

func checkDir(dir string) error {
	if err := privdir.Check(dir); err != nil {
		return fmt.Errorf("cache %s: %w", dir, err)
	}
	return nil
}
