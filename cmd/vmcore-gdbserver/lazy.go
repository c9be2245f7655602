package main

import (
	"io"
	"path/filepath"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbstub"
)

// lazyTarget stands for a kernelTarget still loading: the target
// description and the executable's name are known at once, everything
// else waits for the load.
type lazyTarget struct {
	ready    chan struct{}
	kt       *kernelTarget
	execFile string
	// findExec: the vmlinux is not named yet (it is looked for by build
	// id during the load), so the exec file is the loaded target's.
	findExec bool
}

func newLazyTarget(vmlinux string, offerExec bool) *lazyTarget {
	l := &lazyTarget{ready: make(chan struct{})}
	if offerExec {
		if vmlinux == "" {
			l.findExec = true
		} else {
			l.execFile, _ = filepath.Abs(vmlinux)
		}
	}
	return l
}

func (l *lazyTarget) set(kt *kernelTarget) { l.kt = kt; close(l.ready) }

func (l *lazyTarget) get() *kernelTarget { <-l.ready; return l.kt }

func (l *lazyTarget) Threads() []gdbstub.ThreadID          { return l.get().Threads() }
func (l *lazyTarget) StopThread() gdbstub.ThreadID         { return l.get().StopThread() }
func (l *lazyTarget) HasThread(t gdbstub.ThreadID) bool    { return l.get().HasThread(t) }
func (l *lazyTarget) ThreadName(t gdbstub.ThreadID) string { return l.get().ThreadName(t) }
func (l *lazyTarget) ThreadExtra(t gdbstub.ThreadID) string {
	return l.get().ThreadExtra(t)
}
func (l *lazyTarget) ThreadCore(t gdbstub.ThreadID) (int, bool) { return l.get().ThreadCore(t) }
func (l *lazyTarget) Registers(t gdbstub.ThreadID) ([]gdbstub.Register, error) {
	return l.get().Registers(t)
}
func (l *lazyTarget) ReadMemory(t gdbstub.ThreadID, addr uint64, p []byte) (int, error) {
	return l.get().ReadMemory(t, addr, p)
}
func (l *lazyTarget) SectionOffsets() (string, bool)      { return l.get().SectionOffsets() }
func (l *lazyTarget) LibrariesXML() []byte                { return l.get().LibrariesXML() }
func (l *lazyTarget) Monitor(c string, w io.Writer) error { return l.get().Monitor(c, w) }
func (l *lazyTarget) ExecFile() (string, bool) {
	if l.findExec {
		return l.get().ExecFile()
	}
	return l.execFile, l.execFile != ""
}
func (l *lazyTarget) OpenFile(name string) (gdbstub.File, error) {
	return l.get().OpenFile(name)
}
func (l *lazyTarget) TargetXML(annex string) ([]byte, bool) {
	if annex != "target.xml" {
		return nil, false
	}
	return targetXML, true
}
