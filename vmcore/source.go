package vmcore

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// source is a read-only view of one dump file's bytes: either the mapped
// file itself or, for the flattened format, the file as makedumpfile
// meant it to be laid out.
type source interface {
	io.ReaderAt
	Size() int64
	Name() string
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
func openMapped(path string) (*mappedFile, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
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

func (m *mappedFile) Name() string { return m.name }
func (m *mappedFile) Size() int64  { return int64(len(m.data)) }

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

func (b *bytesSource) Name() string { return b.name }
func (b *bytesSource) Size() int64  { return int64(len(b.data)) }
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
