package gdbstub

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// fileTarget is fakeTarget with files: only the names in files open.
type fileTarget struct {
	fakeTarget
	files fstest.MapFS

	mu     sync.Mutex
	opened []string
	closed int
}

type memFile struct {
	*bytes.Reader
	info fs.FileInfo
	t    *fileTarget
}

func (f memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f memFile) Close() error {
	f.t.mu.Lock()
	f.t.closed++
	f.t.mu.Unlock()
	return nil
}

func (t *fileTarget) OpenFile(name string) (File, error) {
	t.mu.Lock()
	t.opened = append(t.opened, name)
	t.mu.Unlock()
	m, ok := t.files[name]
	if !ok {
		return nil, fmt.Errorf("%q is not served: %w", name, fs.ErrPermission)
	}
	return memFile{bytes.NewReader(m.Data), memInfo{m}, t}, nil
}

type memInfo struct{ m *fstest.MapFile }

func (i memInfo) Name() string       { return "" }
func (i memInfo) Size() int64        { return int64(len(i.m.Data)) }
func (i memInfo) Mode() fs.FileMode  { return i.m.Mode }
func (i memInfo) ModTime() time.Time { return i.m.ModTime }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

func newFileTarget() *fileTarget {
	data := make([]byte, 200000)
	for i := range data {
		data[i] = byte(i * 7) // every byte value, the RSP-reserved ones too
	}
	return &fileTarget{files: fstest.MapFS{
		"/abs/vmlinux": {Data: data, Mode: 0o644, ModTime: time.Unix(1700000000, 0)},
		"/abs/small":   {Data: []byte("$#}*\x00x"), Mode: 0o600},
	}}
}

func vopen(name string, flags int) string {
	return fmt.Sprintf("vFile:open:%s,%x,1ff", hex.EncodeToString([]byte(name)), flags)
}

// The vFile family, as gdb sends it: open, pread (binary, escaped, short
// at the end of the file), fstat in fio_stat layout, close, setfs; every
// refusal an F-1,errno and the session still serving.
func TestVFile(t *testing.T) {
	ft := newFileTarget()
	c, _ := newClientFor(t, ft)
	if r := c.cmd("vFile:setfs:0"); r != "F0" {
		t.Fatalf("setfs: %q", r)
	}
	if r := c.cmd(vopen("/abs/vmlinux", 0)); r != "F0" {
		t.Fatalf("open: %q", r)
	}
	want := ft.files["/abs/vmlinux"].Data
	var got []byte
	for off := 0; ; {
		r := c.cmd(fmt.Sprintf("vFile:pread:0,20000,%x", off))
		n, data, ok := strings.Cut(r, ";")
		if !ok || !strings.HasPrefix(n, "F") {
			t.Fatalf("pread at %x: %q", off, r[:min(len(r), 40)])
		}
		if fmt.Sprintf("F%x", len(data)) != n {
			t.Fatalf("pread at %x: count %s, %d bytes", off, n, len(data))
		}
		if len(data) > MaxPacketSize {
			t.Fatalf("pread returned %d bytes, over the packet size", len(data))
		}
		if len(data) == 0 {
			break
		}
		got = append(got, data...)
		off += len(data)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the file's %d", len(got), len(want))
	}
	r := c.cmd("vFile:fstat:0")
	if !strings.HasPrefix(r, "F40;") || len(r) != 4+64 {
		t.Fatalf("fstat: %q", r)
	}
	st := []byte(r[4:])
	be := binary.BigEndian
	if mode, size, mtime := be.Uint32(st[8:]), be.Uint64(st[28:]), be.Uint32(st[56:]); mode != 0o100644 || size != uint64(len(want)) || mtime != 1700000000 {
		t.Errorf("fstat: mode %o size %d mtime %d", mode, size, mtime)
	}
	if r := c.cmd(vopen("/abs/small", 0)); r != "F1" {
		t.Fatalf("second open: %q", r)
	}
	if r := c.cmd("vFile:pread:1,100,0"); r != "F6;$#}*\x00x" {
		t.Fatalf("reserved bytes: %q", r)
	}
	if r := c.cmd("vFile:pread:1,100,1000"); r != "F0;" {
		t.Fatalf("past the end: %q", r)
	}
	if r := c.cmd("vFile:close:0"); r != "F0" {
		t.Fatalf("close: %q", r)
	}
	if r := c.cmd(vopen("/abs/small", 0)); r != "F0" {
		t.Fatalf("a freed number is reused: %q", r)
	}
	for _, tc := range []struct{ pkt, want string }{
		{vopen("/etc/shadow", 0), "F-1,d"},
		{vopen("/abs/../abs/vmlinux", 0), "F-1,d"},
		{vopen("/abs/vmlinux", 1), "F-1,d"},       // write
		{vopen("/abs/vmlinux", 0x602), "F-1,d"},   // create, truncate
		{vopen("/abs/vmlinux", 0x10000), "F-1,d"}, // a flag gdb does not define
		{"vFile:open:zz,0,0", "F-1,16"},
		{"vFile:open:" + strings.Repeat("61", 5000) + ",0,0", "F-1,5b"},
		{"vFile:open:6162", "F-1,16"},
		{"vFile:pread:7,10,0", "F-1,9"},
		{"vFile:pread:-1,10,0", "F-1,9"},
		{"vFile:pread:0,-1,0", "F-1,16"},
		{"vFile:pread:0,10,-5", "F-1,16"},
		{"vFile:pread:0,10", "F-1,16"},
		{"vFile:fstat:9", "F-1,9"},
		{"vFile:close:9", "F-1,9"},
		{"vFile:pwrite:0,0,abc", "F-1,9"},
		{"vFile:readlink:" + hex.EncodeToString([]byte("/abs/vmlinux")), "F-1,d"},
		{"vFile:unlink:" + hex.EncodeToString([]byte("/abs/vmlinux")), "F-1,d"},
		{"vFile:nonsense:0", ""},
		{"vFile:", ""},
	} {
		if r := c.cmd(tc.pkt); r != tc.want {
			t.Errorf("%.40s: %q, want %q", tc.pkt, r, tc.want)
		}
	}
	if r := c.cmd("vFile:pread:1,3,0"); r != "F3;$#}" {
		t.Fatalf("after the refusals: %q", r)
	}
	// A name is passed on exactly as sent.
	ft.mu.Lock()
	if !strings.Contains(strings.Join(ft.opened, "\n"), "/abs/../abs/vmlinux") {
		t.Errorf("opened %q", ft.opened)
	}
	ft.mu.Unlock()
}

// The descriptor table is bounded, and whatever the client left open is
// closed when it goes.
func TestVFileLimits(t *testing.T) {
	ft := newFileTarget()
	c, done := newClientFor(t, ft)
	for i := 0; i < MaxOpenFiles; i++ {
		if r := c.cmd(vopen("/abs/small", 0)); r != fmt.Sprintf("F%x", i) {
			t.Fatalf("open %d: %q", i, r)
		}
	}
	if r := c.cmd(vopen("/abs/small", 0)); r != "F-1,18" {
		t.Fatalf("open past the limit: %q, want EMFILE", r)
	}
	c.c.Close()
	<-done
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.closed != MaxOpenFiles {
		t.Fatalf("%d of %d files closed when the client left", ft.closed, MaxOpenFiles)
	}
}

// A target without files: vFile is not understood (the empty reply, so
// gdb reads local files).
func TestVFileUnsupported(t *testing.T) {
	c, _ := newClient(t)
	if r := c.cmd(vopen("/abs/vmlinux", 0)); r != "" {
		t.Fatalf("open without a FileSystem: %q", r)
	}
}

// Any packet after "vFile:" gets an F reply or the empty one, never a
// panic, and a refused or malformed one never reaches a file.
func FuzzVFile(f *testing.F) {
	for _, s := range []string{vopen("/abs/vmlinux", 0), "pread:0,20000,0", "fstat:0", "close:0", "setfs:0", "readlink:2f", "pwrite:0,0,", "open:2f,0", "pread:0,-1,-1", "open:" + strings.Repeat("61", 5000) + ",0,0"} {
		f.Add(strings.TrimPrefix(s, "vFile:"))
	}
	f.Fuzz(func(t *testing.T, p string) {
		ft := newFileTarget()
		s := NewSession(ft, struct {
			io.Reader
			io.Writer
		}{strings.NewReader(""), io.Discard}, nil)
		s.vfile(vopen("/abs/small", 0)[len("vFile:"):]) // fd 0
		r := s.vfile(p)
		if len(r) != 0 && r[0] != 'F' {
			t.Fatalf("%q: reply %q", p, r)
		}
		if len(r) > MaxPacketSize+32 {
			t.Fatalf("%q: reply of %d bytes", p, len(r))
		}
		if req, ok, err := parseVFile(p); ok && err == nil && req.op == "open" && req.flags == 0 {
			return
		}
		if len(ft.opened) > 1 {
			t.Fatalf("%q opened %q", p, ft.opened[1:])
		}
		s.closeFiles()
	})
}
