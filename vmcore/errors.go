package vmcore

import (
	"errors"
	"fmt"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrExcluded: the page exists in the machine's memory but the dump
	// tool filtered it out (makedumpfile dump level).
	ErrExcluded = errors.New("page excluded from the dump")
	// ErrNotPresent: the address is outside every range the dump covers
	// (memory hole, beyond max_mapnr, or not in any PT_LOAD).
	ErrNotPresent = errors.New("not present in the dump")
	// ErrCorrupt: the page's descriptor or stored data cannot be decoded.
	ErrCorrupt = errors.New("corrupt page")
	// ErrIncomplete: the dump was cut short and the page was never written.
	ErrIncomplete = errors.New("page missing from an incomplete dump")
	// ErrFormat: a file is not a dump this package understands, or its
	// headers are inconsistent.
	ErrFormat = errors.New("bad dump format")
	// ErrNotMapped: a virtual address has no valid page-table mapping.
	ErrNotMapped = errors.New("not mapped")
)

// FormatError reports a malformed or unsupported file, naming the file and
// the byte offset of the offending structure.
type FormatError struct {
	File   string
	Offset int64
	Msg    string
	Err    error // wrapped cause; ErrFormat when nil
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("%s: offset 0x%x: %s", e.File, e.Offset, e.Msg)
	if e.Err != nil && e.Err != ErrFormat {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error {
	if e.Err == nil {
		return ErrFormat
	}
	return e.Err
}

func formatErr(file string, off int64, format string, args ...any) error {
	return &FormatError{File: file, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// PhysError reports a failed read of physical memory.
type PhysError struct {
	Addr   uint64 // physical address
	File   string // file that holds (or should hold) the page, if known
	Offset int64  // file offset of the page's descriptor or data, -1 if none
	Detail string // extra context, may be empty
	Err    error  // one of the sentinels above
}

func (e *PhysError) Error() string {
	s := fmt.Sprintf("physical address 0x%x: %v", e.Addr, e.Err)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	switch {
	case e.File != "" && e.Offset >= 0:
		s += fmt.Sprintf(" [%s offset 0x%x]", e.File, e.Offset)
	case e.File != "":
		s += " [" + e.File + "]"
	}
	return s
}

func (e *PhysError) Unwrap() error { return e.Err }

// TranslateError reports a virtual address that could not be translated
// or whose backing physical memory could not be read.
type TranslateError struct {
	Addr  uint64 // virtual address
	Level Level  // page-table level where the walk stopped
	Entry uint64 // the entry found at that level (when Err is ErrNotMapped)
	Err   error  // ErrNotMapped, or the *PhysError of a page-table read
}

func (e *TranslateError) Error() string {
	if errors.Is(e.Err, ErrNotMapped) {
		if e.Level == LevelNone {
			return fmt.Sprintf("virtual address 0x%x: %v", e.Addr, e.Err)
		}
		return fmt.Sprintf("virtual address 0x%x: not mapped: %s entry 0x%x is not present", e.Addr, e.Level, e.Entry)
	}
	return fmt.Sprintf("virtual address 0x%x: reading %s table: %v", e.Addr, e.Level, e.Err)
}

func (e *TranslateError) Unwrap() error { return e.Err }
