package vmcore

import (
	"fmt"
	"io"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"golang.org/x/sys/unix"
)

// source is a read-only view of one dump file's bytes: either the mapped
// file itself or, for the flattened format, the file as makedumpfile
// meant it to be laid out.
type source interface {
	io.ReaderAt
	Size() int64
	Name() string
	// stored is how many bytes the file really holds for this view: the
	// bound on any buffer a header read from it may make us allocate
	// (a flattened stream's Size can be far larger than its file).
	stored() int64
	// view returns the bytes [off, off+n) without copying when the source
	// can (a mapped file); ok is false otherwise or if out of range.
	view(off int64, n int) (b []byte, ok bool)
}

// mappedFile is a file mapped read-only into memory. An empty byte slice
// backs zero-length files (mmap refuses them).
type mappedFile struct {
	name string
	data []byte
}

// openMapped opens path read-only and maps it. The dump is evidence: it is
// never opened for writing.
// Only regular files and block devices are opened (rofile refuses a FIFO
// before it can block).
func openMapped(path string) (*mappedFile, error) {
	f, size, err := rofile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size == 0 {
		return &mappedFile{name: path}, nil
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: file too large to map (%d bytes)", path, size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	// Pages are read at random; don't let the kernel read ahead megabytes.
	_ = unix.Madvise(data, unix.MADV_RANDOM)
	return &mappedFile{name: path, data: data}, nil
}

func (m *mappedFile) Name() string  { return m.name }
func (m *mappedFile) Size() int64   { return int64(len(m.data)) }
func (m *mappedFile) stored() int64 { return int64(len(m.data)) }

func (m *mappedFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", m.name, off)
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *mappedFile) view(off int64, n int) ([]byte, bool) {
	if off < 0 || n < 0 || off > int64(len(m.data)) || int64(n) > int64(len(m.data))-off {
		return nil, false
	}
	return m.data[off : off+int64(n) : off+int64(n)], true
}

func (m *mappedFile) Close() error {
	if m.data == nil {
		return nil
	}
	err := unix.Munmap(m.data)
	m.data = nil
	return err
}

// bytesSource serves an in-memory byte slice; fuzz targets and tests use it.
type bytesSource struct {
	name string
	data []byte
}

func (b *bytesSource) Name() string  { return b.name }
func (b *bytesSource) Size() int64   { return int64(len(b.data)) }
func (b *bytesSource) stored() int64 { return int64(len(b.data)) }
func (b *bytesSource) ReadAt(p []byte, off int64) (int, error) {
	m := mappedFile{name: b.name, data: b.data}
	return m.ReadAt(p, off)
}
func (b *bytesSource) view(off int64, n int) ([]byte, bool) {
	m := mappedFile{name: b.name, data: b.data}
	return m.view(off, n)
}

// readFull reads exactly len(p) bytes at off, or reports how the file
// ended early.
func readFull(s source, p []byte, off int64) error {
	if v, ok := s.view(off, len(p)); ok {
		copy(p, v)
		return nil
	}
	n, err := s.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// loadRegion returns the n bytes at off that a header says hold a table
// (a bitmap, notes, program headers), as a view of the mapped file when it
// can. n is checked against the view's size and against what the file
// really stores before anything is allocated: a flattened stream can place
// a record at 2^62 and so claim a table of terabytes in a file of 8 KB.
// fieldOff is the offset of the header field that gave off and n.
func loadRegion(src source, off int64, n uint64, what string, fieldOff int64) ([]byte, error) {
	name := src.Name()
	if off < 0 || off > src.Size() || n > uint64(src.Size()-off) {
		return nil, formatErr(name, fieldOff, "%s at 0x%x (%d bytes) runs past the end of the file (%d bytes)", what, off, n, src.Size())
	}
	if n > uint64(src.stored()) {
		return nil, formatErr(name, fieldOff, "%s of %d bytes is larger than the %d bytes the file holds", what, n, src.stored())
	}
	if v, ok := src.view(off, int(n)); ok {
		return v, nil
	}
	buf := make([]byte, n)
	if err := readFull(src, buf, off); err != nil {
		return nil, formatErr(name, off, "%s: %v", what, err)
	}
	return buf, nil
}
