package gdbstub

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"syscall"
)

// FileSystem serves gdb's Host I/O packets (vFile), read-only: gdb reads
// through the connection the files the target chooses to show it (with
// sysroot "target:", gdb's default, that is how it loads the executable
// and the libraries the target names). OpenFile gets the name exactly as
// gdb sent it and decides alone what, if anything, it stands for; the
// session only ever reads what OpenFile returned.
type FileSystem interface {
	// OpenFile opens name for reading. A refusal wraps fs.ErrPermission
	// (sent as EACCES), a missing file fs.ErrNotExist (ENOENT).
	OpenFile(name string) (File, error)
}

// File is a file opened for gdb. Close ends this handle only.
type File interface {
	io.ReaderAt
	Stat() (fs.FileInfo, error)
	Close() error
}

// gdb's File-I/O errno values (gdbsupport/fileio.h), not the host's.
const (
	fioEPERM        = 1
	fioENOENT       = 2
	fioEINTR        = 4
	fioEIO          = 5
	fioEBADF        = 9
	fioEACCES       = 13
	fioEFAULT       = 14
	fioEBUSY        = 16
	fioEEXIST       = 17
	fioENODEV       = 19
	fioENOTDIR      = 20
	fioEISDIR       = 21
	fioEINVAL       = 22
	fioENFILE       = 23
	fioEMFILE       = 24
	fioEFBIG        = 27
	fioENOSPC       = 28
	fioESPIPE       = 29
	fioEROFS        = 30
	fioENOSYS       = 88
	fioENAMETOOLONG = 91
)

// fileio open flags and mode bits.
const (
	fioORDONLY = 0x0
	fioSIFREG  = 0o100000
)

// MaxOpenFiles bounds a session's vFile descriptors: gdb holds a few (the
// executable, a library being read); a client that never closes its own
// gets EMFILE instead of growing the table.
const MaxOpenFiles = 64

// maxFileName bounds a vFile name (Linux's PATH_MAX).
const maxFileName = 4096

// fioStatSize is sizeof(struct fio_stat): the fstat attachment.
const fioStatSize = 64

// vfileReq is one parsed vFile packet.
type vfileReq struct {
	op     string // open, pread, close, fstat, setfs, readlink, pwrite, unlink
	name   string // open, readlink, unlink
	flags  int64  // open
	fd     int64  // pread, close, fstat, pwrite
	count  int64  // pread
	offset int64  // pread, pwrite
	pid    int64  // setfs
}

// errVFile is a malformed vFile packet; the reply is EINVAL.
var errVFile = errors.New("malformed vFile packet")

// parseVFile parses the text after "vFile:". ok is false for an operation
// this server does not implement (the empty reply: gdb then knows).
func parseVFile(p string) (r vfileReq, ok bool, err error) {
	op, args, found := strings.Cut(p, ":")
	if !found {
		return r, false, nil
	}
	r.op = op
	num := func(s string) (int64, error) {
		// Numbers are hex with an explicit sign, never two's complement.
		v, err := strconv.ParseInt(s, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not a number", errVFile, s)
		}
		return v, nil
	}
	name := func(s string) (string, error) {
		if len(s) > 2*maxFileName {
			return "", fmt.Errorf("%w: name of %d bytes: %w", errVFile, len(s)/2, syscall.ENAMETOOLONG)
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return "", fmt.Errorf("%w: name is not hex", errVFile)
		}
		return string(b), nil
	}
	fields := func(n int) ([]string, error) {
		f := strings.Split(args, ",")
		if len(f) != n {
			return nil, fmt.Errorf("%w: vFile:%s wants %d arguments, got %d", errVFile, op, n, len(f))
		}
		return f, nil
	}
	switch op {
	case "open":
		f, err := fields(3)
		if err != nil {
			return r, true, err
		}
		if r.name, err = name(f[0]); err != nil {
			return r, true, err
		}
		if r.flags, err = num(f[1]); err != nil {
			return r, true, err
		}
		_, err = num(f[2]) // the mode of a created file: nothing is created
		return r, true, err
	case "pread":
		f, err := fields(3)
		if err != nil {
			return r, true, err
		}
		if r.fd, err = num(f[0]); err != nil {
			return r, true, err
		}
		if r.count, err = num(f[1]); err != nil {
			return r, true, err
		}
		r.offset, err = num(f[2])
		return r, true, err
	case "close", "fstat":
		r.fd, err = num(args)
		return r, true, err
	case "setfs":
		r.pid, err = num(args)
		return r, true, err
	case "readlink", "unlink":
		r.name, err = name(args)
		return r, true, err
	case "pwrite":
		// fd,offset,data: only the fd matters, nothing is written.
		fd, _, _ := strings.Cut(args, ",")
		r.fd, err = num(fd)
		return r, true, err
	}
	return r, false, nil
}

// fioErrno maps an error to gdb's errno: the fs sentinels first, then a
// host errno with a File-I/O equivalent, else EIO.
func fioErrno(err error) int {
	switch {
	case errors.Is(err, syscall.ENAMETOOLONG):
		return fioENAMETOOLONG
	case errors.Is(err, errVFile):
		return fioEINVAL
	case errors.Is(err, fs.ErrPermission):
		return fioEACCES
	case errors.Is(err, fs.ErrNotExist):
		return fioENOENT
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		switch e {
		case syscall.EPERM:
			return fioEPERM
		case syscall.EINTR:
			return fioEINTR
		case syscall.EBADF:
			return fioEBADF
		case syscall.EFAULT:
			return fioEFAULT
		case syscall.EBUSY:
			return fioEBUSY
		case syscall.EEXIST:
			return fioEEXIST
		case syscall.ENODEV:
			return fioENODEV
		case syscall.ENOTDIR:
			return fioENOTDIR
		case syscall.EISDIR:
			return fioEISDIR
		case syscall.EINVAL:
			return fioEINVAL
		case syscall.ENFILE:
			return fioENFILE
		case syscall.EMFILE:
			return fioEMFILE
		case syscall.EFBIG:
			return fioEFBIG
		case syscall.ENOSPC:
			return fioENOSPC
		case syscall.ESPIPE:
			return fioESPIPE
		case syscall.EROFS:
			return fioEROFS
		case syscall.ENOSYS:
			return fioENOSYS
		}
	}
	return fioEIO
}

func fioFail(errno int) []byte { return []byte(fmt.Sprintf("F-1,%x", errno)) }

// vfile answers a vFile packet (p without "vFile:"). Every failure is an
// F-1,errno reply and, with a log, one line saying why.
func (s *Session) vfile(p string) []byte {
	fsys, ok := s.t.(FileSystem)
	if !ok {
		return nil
	}
	r, ok, err := parseVFile(p)
	if !ok {
		return nil
	}
	fail := func(err error) []byte {
		s.logf("vFile:%s: %v", r.op, err)
		return fioFail(fioErrno(err))
	}
	if err != nil {
		return fail(err)
	}
	switch r.op {
	case "setfs":
		// One file system, whichever process gdb means.
		return []byte("F0")
	case "open":
		// Reading is all: any other flag (write, create, truncate,
		// append, or one gdb does not define) is refused.
		if r.flags != fioORDONLY {
			return fail(fmt.Errorf("%q with flags %#x: %w (files are served read-only)", r.name, r.flags, fs.ErrPermission))
		}
		fd := -1
		for i := range s.files {
			if s.files[i] == nil {
				fd = i
				break
			}
		}
		if fd < 0 && len(s.files) >= MaxOpenFiles {
			return fail(fmt.Errorf("%q: %d files already open: %w", r.name, len(s.files), syscall.EMFILE))
		}
		f, err := fsys.OpenFile(r.name)
		if err != nil {
			return fail(fmt.Errorf("%q: %w", r.name, err))
		}
		if f == nil {
			return fail(fmt.Errorf("%q: %w", r.name, fs.ErrNotExist))
		}
		if fd < 0 {
			fd = len(s.files)
			s.files = append(s.files, f)
		} else {
			s.files[fd] = f
		}
		return []byte(fmt.Sprintf("F%x", fd))
	case "readlink":
		// Files are shown to gdb, never what a name links to.
		return fail(fmt.Errorf("%q: %w", r.name, fs.ErrPermission))
	case "unlink":
		return fail(fmt.Errorf("%q: %w", r.name, fs.ErrPermission))
	}
	f := s.file(r.fd)
	if f == nil {
		return fail(fmt.Errorf("fd %d: %w", r.fd, syscall.EBADF))
	}
	switch r.op {
	case "close":
		s.files[r.fd] = nil
		if err := f.Close(); err != nil {
			return fail(fmt.Errorf("fd %d: %w", r.fd, err))
		}
		return []byte("F0")
	case "pwrite":
		return fail(fmt.Errorf("fd %d: %w (opened read-only)", r.fd, syscall.EBADF))
	case "fstat":
		st, err := f.Stat()
		if err == nil && st == nil {
			err = errors.New("no file information")
		}
		if err != nil {
			return fail(fmt.Errorf("fd %d: %w", r.fd, err))
		}
		return append([]byte(fmt.Sprintf("F%x;", fioStatSize)), fioStat(st)...)
	case "pread":
		if r.count < 0 || r.offset < 0 {
			return fail(fmt.Errorf("fd %d: count %d at offset %d: %w", r.fd, r.count, r.offset, syscall.EINVAL))
		}
		// At most what gdb itself asks for (its packet size, ours): the
		// escaped reply may be longer, which gdb's reader allows, and
		// fewer round trips matter over ssh.
		n := min(r.count, MaxPacketSize)
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, r.offset)
		if got == 0 && err != nil && err != io.EOF {
			return fail(fmt.Errorf("fd %d: %d bytes at offset %d: %w", r.fd, n, r.offset, err))
		}
		return append([]byte(fmt.Sprintf("F%x;", got)), buf[:got]...)
	}
	return nil
}

func (s *Session) file(fd int64) File {
	if fd < 0 || fd >= int64(len(s.files)) {
		return nil
	}
	return s.files[fd]
}

// closeFiles closes what the client left open.
func (s *Session) closeFiles() {
	for i, f := range s.files {
		if f != nil {
			f.Close()
			s.files[i] = nil
		}
	}
}

// fioStat is struct fio_stat, big-endian. A regular file only, with its
// permission bits, size and modification time; device, inode and owner
// stay 0 (gdb needs none of them, and they describe the host).
func fioStat(st fs.FileInfo) []byte {
	b := make([]byte, fioStatSize)
	be := binary.BigEndian
	be.PutUint32(b[8:], fioSIFREG|uint32(st.Mode().Perm()))
	be.PutUint32(b[12:], 1) // nlink
	size := max(st.Size(), 0)
	be.PutUint64(b[28:], uint64(size))
	be.PutUint64(b[36:], 4096)                   // blksize
	be.PutUint64(b[44:], uint64((size+511)/512)) // blocks
	t := uint32(max(st.ModTime().Unix(), 0))
	be.PutUint32(b[52:], t) // atime
	be.PutUint32(b[56:], t) // mtime
	be.PutUint32(b[60:], t) // ctime
	return b
}
