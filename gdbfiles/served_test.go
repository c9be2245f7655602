package gdbfiles

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Only the exact names added open, and each is the file opened then: a
// link swapped afterwards, or any other spelling of the same file, does
// not change what is read or let anything else in.
func TestServed(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.ko")
	os.WriteFile(real, []byte("module"), 0o644)
	link := filepath.Join(dir, "link.ko")
	os.Symlink(real, link)
	s := &Served{}
	defer s.Close()
	f, err := os.Open(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(link, f); err != nil {
		t.Fatal(err)
	}
	// The link now points out: the served file is still the one opened.
	os.Remove(link)
	os.Symlink("/etc/passwd", link)
	h, err := s.Open(link)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.NewSectionReader(h, 0, 100))
	if string(b) != "module" {
		t.Fatalf("read %q through the swapped link", b)
	}
	st, err := h.Stat()
	if err != nil || st.Size() != 6 {
		t.Fatalf("stat %v %v", st, err)
	}
	h.Close()
	if _, err := h.ReadAt(b, 0); err == nil {
		t.Fatal("read after close")
	}
	// Another handle still reads.
	if h2, err := s.Open(link); err != nil {
		t.Fatal(err)
	} else if n, _ := h2.ReadAt(make([]byte, 3), 0); n != 3 {
		t.Fatal("second handle")
	}
	for _, name := range []string{real, dir + "/./link.ko", dir + "//link.ko", dir + "/x/../link.ko", "link.ko", "/etc/passwd", "/proc/self/environ", link + "\x00", ""} {
		if _, err := s.Open(name); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("Open(%q): %v, want a permission error", name, err)
		}
	}
}
