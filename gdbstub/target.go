package gdbstub

import (
	"errors"
	"io"
)

// ThreadID is a positive RSP thread id.
type ThreadID uint64

// Register is one register value in target byte order; Value nil means
// the target does not know it (sent as "xx", shown by gdb as
// <unavailable>, never as a made-up zero).
type Register struct {
	Value []byte
	Size  int // bytes
}

// Target is the minimum a stopped target provides.
type Target interface {
	// Threads returns every thread id; the first one is where the
	// target stopped.
	Threads() []ThreadID
	// StopThread is the thread the stop reply names.
	StopThread() ThreadID
	// HasThread reports whether tid exists (the T packet).
	HasThread(tid ThreadID) bool
	// Registers returns tid's registers in the order of the target
	// description (the g packet layout). With an error it may still
	// return a set (unknown registers unavailable); that set is served
	// and the error logged.
	Registers(tid ThreadID) ([]Register, error)
	// ReadMemory reads at addr in tid's address space; a short count with
	// an error is a partial read.
	ReadMemory(tid ThreadID, addr uint64, p []byte) (int, error)
}

// TargetDescriber supplies target.xml (and any file it includes) for
// qXfer:features:read.
type TargetDescriber interface {
	TargetXML(annex string) ([]byte, bool)
}

// ThreadDescriber names threads for qXfer:threads:read and
// qThreadExtraInfo.
type ThreadDescriber interface {
	ThreadName(tid ThreadID) string
	ThreadExtra(tid ThreadID) string
	ThreadCore(tid ThreadID) (int, bool)
}

// ExecFiler names the executable for qXfer:exec-file:read.
type ExecFiler interface {
	ExecFile() (string, bool)
}

// SectionOffsetter answers qOffsets.
type SectionOffsetter interface {
	// SectionOffsets returns the reply body, e.g. "TextSeg=...;DataSeg=...".
	SectionOffsets() (string, bool)
}

// MonitorCommander runs `monitor CMD` (qRcmd); out is sent to gdb as
// console output.
type MonitorCommander interface {
	Monitor(cmd string, out io.Writer) error
}

// Librarian supplies the library list XML (qXfer:libraries:read).
type Librarian interface {
	LibrariesXML() []byte
}

// ErrReadOnly is what writes and resumes get.
var ErrReadOnly = errors.New("the target is a read-only crash dump")
