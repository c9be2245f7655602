package debuginfod

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// elfWithBuildID makes a minimal ELF64 file whose only section is a
// .note.gnu.build-id holding id, followed by pad bytes.
func elfWithBuildID(t *testing.T, id string, pad int) []byte {
	t.Helper()
	desc, err := hex.DecodeString(id)
	if err != nil {
		t.Fatal(err)
	}
	var note bytes.Buffer
	binary.Write(&note, binary.LittleEndian, [3]uint32{4, uint32(len(desc)), 3})
	note.WriteString("GNU\x00")
	note.Write(desc)
	for note.Len()%4 != 0 {
		note.WriteByte(0)
	}
	shstr := []byte("\x00.note.gnu.build-id\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	noteOff := uint64(ehsize)
	strOff := noteOff + uint64(note.Len())
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	var b bytes.Buffer
	hdr := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
		Shoff: shOff, Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2}
	copy(hdr.Ident[:], "\x7fELF\x02\x01\x01")
	binary.Write(&b, binary.LittleEndian, hdr)
	b.Write(note.Bytes())
	b.Write(shstr)
	for uint64(b.Len()) < shOff {
		b.WriteByte(0)
	}
	binary.Write(&b, binary.LittleEndian, elf.Section64{})
	binary.Write(&b, binary.LittleEndian, elf.Section64{Name: 1, Type: uint32(elf.SHT_NOTE), Flags: uint64(elf.SHF_ALLOC), Off: noteOff, Size: uint64(note.Len()), Addralign: 4})
	binary.Write(&b, binary.LittleEndian, elf.Section64{Name: 20, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1})
	b.Write(make([]byte, pad))
	return b.Bytes()
}

const (
	idA = "01d2640d3a13145ee314eb05b155f141b7b7058b"
	idB = "ba7ab1a96eb2281593d74c84e9a6af332e05173c"
)

func newClient(t *testing.T, urls ...string) *Client {
	return &Client{URLs: urls, CacheDir: filepath.Join(t.TempDir(), "cache"), Timeout: 5 * time.Second}
}

func TestFetch(t *testing.T) {
	good := elfWithBuildID(t, idA, 1<<16)
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
		max     int64
		wantErr error // nil: success
		errText string
	}{
		{name: "ok", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/buildid/"+idA+"/debuginfo" {
				http.NotFound(w, r)
				return
			}
			w.Write(good)
		}},
		{name: "not found", handler: http.NotFound, wantErr: ErrNotFound, errText: "404"},
		{name: "other build id", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Write(elfWithBuildID(t, idB, 0))
		}, wantErr: ErrWrongBuildID, errText: idB},
		{name: "not elf", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("<html>proxy login</html>"))
		}, wantErr: ErrNotFound, errText: "not an ELF file"},
		{name: "announced too large", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(good)))
			w.Write(good)
		}, max: 1000, wantErr: ErrTooLarge, errText: "announced"},
		{name: "streamed too large", handler: func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush() // chunked: no Content-Length
			w.Write(good)
		}, max: 1000, wantErr: ErrTooLarge},
		{name: "truncated", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(good)))
			w.Write(good[:len(good)/2])
		}, wantErr: ErrNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			cl := newClient(t, srv.URL)
			cl.MaxSize = c.max
			p, err := cl.Fetch(context.Background(), idA, Debuginfo, "")
			if c.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(got, good) {
					t.Fatalf("cached file differs from the served one (%v)", err)
				}
				return
			}
			if !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), c.errText) || !strings.Contains(err.Error(), idA) {
				t.Fatalf("got %v, want %v mentioning %q and the build id", err, c.wantErr, c.errText)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			// Nothing partial is left in the cache.
			ents, _ := os.ReadDir(filepath.Join(cl.CacheDir, idA))
			if len(ents) != 0 {
				t.Errorf("cache holds %v after a failed fetch", ents)
			}
		})
	}
}

// The first server that has the file serves it; the file is then taken
// from the cache without asking anyone.
func TestFetchFallbackAndCache(t *testing.T) {
	var hits atomic.Int32
	empty := httptest.NewServer(http.NotFoundHandler())
	defer empty.Close()
	full := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(elfWithBuildID(t, idA, 0))
	}))
	defer full.Close()
	cl := newClient(t, empty.URL, full.URL)
	for i := 0; i < 3; i++ {
		if _, err := cl.Fetch(context.Background(), strings.ToUpper(idA), Debuginfo, ""); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d downloads, want 1", hits.Load())
	}
	if _, ok := cl.Cached(idA, Executable); ok {
		t.Fatal("an executable was never fetched but is cached")
	}
}

// Concurrent fetches of one file share one download.
func TestFetchConcurrent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(100 * time.Millisecond)
		w.Write(elfWithBuildID(t, idA, 0))
	}))
	defer srv.Close()
	cl := newClient(t, srv.URL)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.Fetch(context.Background(), idA, Debuginfo, ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if hits.Load() != 1 {
		t.Fatalf("%d downloads, want 1", hits.Load())
	}
}

// A server that stops sending is given up after the timeout.
func TestFetchStall(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		<-release
	}))
	defer srv.Close()
	defer close(release)
	cl := newClient(t, srv.URL)
	cl.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := cl.Fetch(context.Background(), idA, Debuginfo, "")
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want %v", err, ErrStalled)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
}

func TestFetchRefuses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("asked %s", r.URL)
	}))
	defer srv.Close()
	// Ids that are not hex never reach a server (they would name paths).
	for _, id := range []string{"", "0", "../../etc/passwd", "zz", strings.Repeat("a", 258)} {
		if _, err := newClient(t, srv.URL).Fetch(context.Background(), id, Debuginfo, ""); !errors.Is(err, ErrBadBuildID) {
			t.Errorf("id %q: got %v, want %v", id, err, ErrBadBuildID)
		}
	}
	// A cache directory others can write to, or a link, is refused.
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	link := filepath.Join(dir, "link")
	os.Symlink(t.TempDir(), link)
	for _, cache := range []string{open, link} {
		cl := &Client{URLs: []string{srv.URL}, CacheDir: cache}
		if _, err := cl.Fetch(context.Background(), idA, Debuginfo, ""); !errors.Is(err, ErrUnsafeCache) {
			t.Errorf("cache %s: got %v, want %v", cache, err, ErrUnsafeCache)
		}
	}
	// Not http(s).
	cl := newClient(t, "file:///etc")
	if _, err := cl.Fetch(context.Background(), idA, Debuginfo, ""); err == nil || !strings.Contains(err.Error(), "not an http") {
		t.Errorf("file URL: got %v", err)
	}
}

func TestProgressLines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(elfWithBuildID(t, idA, 3<<20))
	}))
	defer srv.Close()
	var out bytes.Buffer
	cl := newClient(t, srv.URL)
	cl.Progress = &out
	if _, err := cl.Fetch(context.Background(), idA, Debuginfo, "vmlinux 6.1.0-test"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "downloading vmlinux 6.1.0-test (build id "+idA) || !strings.Contains(lines[1], "3.1 MB in") {
		t.Fatalf("progress on a non-terminal:\n%s", out.String())
	}
}

// A name from the dump never puts control characters on the terminal.
func TestProgressNameSanitized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(elfWithBuildID(t, idA, 0))
	}))
	defer srv.Close()
	var out bytes.Buffer
	cl := newClient(t, srv.URL)
	cl.Progress = &out
	if _, err := cl.Fetch(context.Background(), idA, Debuginfo, "vmlinux 6.1.0\x1b]0;owned\a"); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\a") || !strings.Contains(out.String(), "vmlinux 6.1.0?]0;owned?") {
		t.Fatalf("progress: %q", out.String())
	}
}
