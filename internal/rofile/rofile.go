// Package rofile opens the files vmcore-gdbserver reads as evidence (dumps,
// kernel images) read-only, refusing anything that is not a regular file or
// a block device before it can block: open(2) of a FIFO with no writer waits
// forever, and a character device or socket streams without end.
package rofile

import (
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// kind names a file type for an error message.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO (named pipe)"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("a special file (mode 0%o)", mode&unix.S_IFMT)
}

func usable(mode uint32) bool {
	t := mode & unix.S_IFMT
	return t == unix.S_IFREG || t == unix.S_IFBLK
}

// Open opens path read-only and returns the file and its size in bytes (for
// a block device, the device's size). Only regular files and block devices
// are accepted; the error names the file and what it is.
func Open(path string) (*os.File, int64, error) {
	// Stat first so a FIFO is refused without ever being opened.
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if !usable(st.Mode) {
		return nil, 0, fmt.Errorf("%s: is %s, not a regular file or block device", path, kind(st.Mode))
	}
	// O_NONBLOCK: if the path was swapped for a FIFO since the stat, open
	// still returns at once and the fstat below refuses it.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	fail := func(err error) (*os.File, int64, error) {
		unix.Close(fd)
		return nil, 0, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(&fs.PathError{Op: "fstat", Path: path, Err: err})
	}
	if !usable(st.Mode) {
		return fail(fmt.Errorf("%s: is %s, not a regular file or block device", path, kind(st.Mode)))
	}
	// Back to blocking reads, so os.File does plain pread(2).
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	if err != nil {
		return fail(&fs.PathError{Op: "fcntl", Path: path, Err: err})
	}
	size := st.Size
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		// stat reports 0 for a block device; its end is its size.
		end, err := unix.Seek(fd, 0, 2)
		if err != nil {
			return fail(&fs.PathError{Op: "seek", Path: path, Err: err})
		}
		if _, err := unix.Seek(fd, 0, 0); err != nil {
			return fail(&fs.PathError{Op: "seek", Path: path, Err: err})
		}
		size = end
	}
	if size < 0 {
		return fail(fmt.Errorf("%s: negative size %d", path, size))
	}
	return os.NewFile(uintptr(fd), path), size, nil
}
