package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbfiles"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbstub"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
)

// idleThreadBase puts the per-CPU idle tasks (all pid 0) above any pid
// the kernel can hand out (PID_MAX_LIMIT on 64-bit), as thread cpu+base.
const idleThreadBase = 4 << 20

// kernelTarget presents the kernel model to gdbstub: one thread per task.
type kernelTarget struct {
	k        *kernel.Kernel
	threads  []gdbstub.ThreadID
	byTID    map[gdbstub.ThreadID]*kernel.Task
	stop     gdbstub.ThreadID
	execFile string
	offsets  string
	vmlinux  string
	dumps    []string
	modFiles *gdbfiles.ModuleFiles
	// served is what gdb may read through the connection (vFile): the
	// vmlinux, then the module files once the library list is made.
	served *gdbfiles.Served

	viewOnce sync.Once
	view     []gdbfiles.Patch

	libOnce sync.Once
	libXML  []byte
	libLog  func(string)

	mu   sync.Mutex
	regs map[*kernel.Task][]gdbstub.Register
}

// threadFilter selects which tasks become threads.
type threadFilter string

const (
	threadsAll    threadFilter = "all"
	threadsActive threadFilter = "active" // on a CPU, uninterruptible, or panicking
	threadsCPUs   threadFilter = "cpus"   // the task on each CPU
)

// unknownPIDBase numbers the tasks of CPUs whose pid the dump does not
// say (a hypervisor dump whose run queue is unreadable), as cpu+base.
const unknownPIDBase = 2 * idleThreadBase

func tidOf(t *kernel.Task) gdbstub.ThreadID {
	if t.PID < 0 {
		return gdbstub.ThreadID(unknownPIDBase + t.CPU)
	}
	if t.PID == 0 {
		return gdbstub.ThreadID(idleThreadBase + t.CPU)
	}
	return gdbstub.ThreadID(t.PID)
}

func newKernelTarget(k *kernel.Kernel, filter threadFilter, execFile string) (*kernelTarget, error) {
	kt := &kernelTarget{k: k, byTID: map[gdbstub.ThreadID]*kernel.Task{}, regs: map[*kernel.Task][]gdbstub.Register{}}
	for _, t := range k.Tasks {
		switch filter {
		case threadsActive:
			if t.OnCPU == nil && t.State != 'D' && !t.Panic {
				continue
			}
		case threadsCPUs:
			if t.OnCPU == nil {
				continue
			}
		}
		tid := tidOf(t)
		if _, dup := kt.byTID[tid]; dup {
			continue
		}
		kt.byTID[tid] = t
		kt.threads = append(kt.threads, tid)
	}
	if len(kt.threads) == 0 {
		return nil, fmt.Errorf("no task found in the dump")
	}
	kt.stop = kt.threads[0]
	for _, t := range k.Tasks {
		if t.Panic {
			kt.stop = tidOf(t)
		}
	}
	if execFile != "" {
		abs, err := filepath.Abs(execFile)
		if err == nil {
			kt.execFile = abs
		}
	}
	// KASLR: absolute bases of the vmlinux's text and data segments.
	if k.Vmlinux == nil {
		return kt, nil
	}
	if segs := k.Vmlinux.LoadSegments(); len(segs) >= 2 {
		kt.offsets = fmt.Sprintf("TextSeg=%x;DataSeg=%x", segs[0].VAddr+k.KASLR, segs[1].VAddr+k.KASLR)
	}
	return kt, nil
}

func (kt *kernelTarget) Threads() []gdbstub.ThreadID  { return kt.threads }
func (kt *kernelTarget) StopThread() gdbstub.ThreadID { return kt.stop }
func (kt *kernelTarget) HasThread(tid gdbstub.ThreadID) bool {
	_, ok := kt.byTID[tid]
	return ok
}

// noReg stands for the registers no dump holds (the x87 state).
const noReg amd64.Reg = -1

// gdbRegLayout is gdb's amd64 register order, which the g packet and
// targetXML follow: name, size in bytes and the register it shows.
var gdbRegLayout = []struct {
	name string
	size int
	reg  amd64.Reg
}{
	{"rax", 8, amd64.RAX}, {"rbx", 8, amd64.RBX}, {"rcx", 8, amd64.RCX}, {"rdx", 8, amd64.RDX},
	{"rsi", 8, amd64.RSI}, {"rdi", 8, amd64.RDI}, {"rbp", 8, amd64.RBP}, {"rsp", 8, amd64.RSP},
	{"r8", 8, amd64.R8}, {"r9", 8, amd64.R9}, {"r10", 8, amd64.R10}, {"r11", 8, amd64.R11},
	{"r12", 8, amd64.R12}, {"r13", 8, amd64.R13}, {"r14", 8, amd64.R14}, {"r15", 8, amd64.R15},
	{"rip", 8, amd64.RIP},
	{"eflags", 4, amd64.EFLAGS}, {"cs", 4, amd64.CS}, {"ss", 4, amd64.SS}, {"ds", 4, amd64.DS},
	{"es", 4, amd64.ES}, {"fs", 4, amd64.FS}, {"gs", 4, amd64.GS},
	{"st0", 10, noReg}, {"st1", 10, noReg}, {"st2", 10, noReg}, {"st3", 10, noReg},
	{"st4", 10, noReg}, {"st5", 10, noReg}, {"st6", 10, noReg}, {"st7", 10, noReg},
	{"fctrl", 4, noReg}, {"fstat", 4, noReg}, {"ftag", 4, noReg}, {"fiseg", 4, noReg},
	{"fioff", 4, noReg}, {"foseg", 4, noReg}, {"fooff", 4, noReg}, {"fop", 4, noReg},
	{"orig_rax", 8, amd64.OrigRAX}, {"fs_base", 8, amd64.FSBase}, {"gs_base", 8, amd64.GSBase},
}

func (kt *kernelTarget) Registers(tid gdbstub.ThreadID) ([]gdbstub.Register, error) {
	t := kt.byTID[tid]
	if t == nil {
		return nil, fmt.Errorf("no thread %x", uint64(tid))
	}
	kt.mu.Lock()
	cached, ok := kt.regs[t]
	kt.mu.Unlock()
	if ok {
		return cached, nil
	}
	// A task whose registers cannot be read still answers: every register
	// unavailable, the reason in the log.
	r, err := kt.k.TaskRegisters(t)
	out := make([]gdbstub.Register, len(gdbRegLayout))
	for i, l := range gdbRegLayout {
		out[i].Size = l.size
		if v, ok := r.Get(l.reg); ok {
			b := make([]byte, 8)
			binary.LittleEndian.PutUint64(b, v)
			out[i].Value = b[:l.size]
		}
	}
	kt.mu.Lock()
	kt.regs[t] = out
	kt.mu.Unlock()
	return out, err
}

func (kt *kernelTarget) ReadMemory(tid gdbstub.ThreadID, addr uint64, p []byte) (int, error) {
	return kt.k.ReadMemory(kt.byTID[tid], addr, p)
}

func (kt *kernelTarget) ThreadName(tid gdbstub.ThreadID) string {
	if t := kt.byTID[tid]; t != nil {
		return t.Comm
	}
	return ""
}

func (kt *kernelTarget) ThreadExtra(tid gdbstub.ThreadID) string {
	t := kt.byTID[tid]
	if t == nil {
		return ""
	}
	tgid := strconv.Itoa(int(t.TGID))
	if t.Unreadable != "" {
		tgid = "?"
	}
	s := fmt.Sprintf("pid %d tgid %s state %c cpu %d task 0x%x", t.PID, tgid, t.State, t.CPU, t.Addr)
	if t.OnCPU != nil {
		s += " [running]"
	}
	if t.Panic {
		s += " [panic]"
	}
	switch {
	case !kt.k.HasTypes():
		// One thread per CPU: no task_struct can be read without types.
		s = fmt.Sprintf("cpu %d [running]", t.CPU)
		if t.PID >= 0 {
			s = fmt.Sprintf("pid %d (from the CPU's note) cpu %d [running]", t.PID, t.CPU)
		}
		if t.Panic {
			s += " [panic]"
		}
		s += " [" + t.Unreadable + "]"
	case t.Unreadable != "":
		s += " [task_struct not in the dump: " + t.Unreadable + "]"
	}
	return s
}

func (kt *kernelTarget) ThreadCore(tid gdbstub.ThreadID) (int, bool) {
	if t := kt.byTID[tid]; t != nil {
		return t.CPU, true
	}
	return 0, false
}

func (kt *kernelTarget) ExecFile() (string, bool) { return kt.execFile, kt.execFile != "" }

func (kt *kernelTarget) SectionOffsets() (string, bool) { return kt.offsets, kt.offsets != "" }

// LibrariesXML presents the loaded modules as shared libraries, read and
// located once.
func (kt *kernelTarget) LibrariesXML() []byte {
	kt.libOnce.Do(func() {
		mods, err := kt.k.Modules()
		var notes []string
		if err != nil {
			notes = append(notes, err.Error())
		}
		x, more := gdbfiles.LibrariesXML(mods, kt.modFiles, kt.served)
		kt.libXML, notes = x, append(notes, more...)
		if lib, err := kt.unwindLibrary(); err != nil {
			notes = append(notes, fmt.Sprintf("no ORC unwind object for gdb: %v", err))
		} else if i := bytes.LastIndex(kt.libXML, []byte("</library-list>")); i >= 0 {
			// Last: the modules' own CFI, if they have any, comes first.
			kt.libXML = append(kt.libXML[:i:i], append([]byte(lib), kt.libXML[i:]...)...)
		}
		for _, n := range notes {
			if kt.libLog != nil {
				kt.libLog(n)
			}
		}
	})
	return kt.libXML
}

// unwindObjectName is the generated unwind object's file name, as
// `info sharedlibrary` lists it.
const unwindObjectName = "orc-unwind.elf"

// unwindLibrary writes the kernel's ORC translated to DWARF CFI
// (kernel.UnwindObject) beside the decompressed modules and returns its
// library-list entry: gdb consults every objfile's .debug_frame, so this
// one completes its unwinding through entry code, pt_regs frames and
// modules without debug info, and ends it at user space.
func (kt *kernelTarget) unwindLibrary() (string, error) {
	if kt.modFiles == nil {
		return "", fmt.Errorf("no directory for generated files")
	}
	obj, err := kt.k.UnwindObject()
	if err != nil {
		return "", err
	}
	// Its .text must be where the object says; gdb takes a library's
	// section address as the offset to add (solib-target.c), so 0.
	if _, err := unwind.CFIObjectText(obj); err != nil {
		return "", err
	}
	path, err := kt.modFiles.WriteFile(unwindObjectName, obj)
	if err != nil {
		return "", err
	}
	if kt.served != nil {
		// gdb reads libraries through the connection (sysroot target:).
		f, _, err := rofile.Open(path)
		if err == nil {
			err = kt.served.Add(path, f)
		}
		if err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("  <library name=\"%s\">\n    <section address=\"0x0\"/>\n  </library>\n", gdbstub.EscapeXML(path)), nil
}

// symbolObjectName is the symbol object's file name (a dump read without
// its vmlinux).
const symbolObjectName = "kernel-symbols.elf"

// symbolFile writes the symbol object made from the dump's kallsyms and
// BTF (kernel.SymbolObject) beside the unwind object, to be offered as
// the executable: gdb reads an exec file's symbols at once (a library's
// only once an exec file exists), places its sections where they are,
// and then loads the libraries (modules, the unwind object) too.
func (kt *kernelTarget) symbolFile() (string, []string, error) {
	if kt.modFiles == nil {
		return "", nil, fmt.Errorf("no directory for generated files")
	}
	obj, notes, err := kt.k.SymbolObject()
	if err != nil {
		return "", nil, err
	}
	path, err := kt.modFiles.WriteFile(symbolObjectName, obj)
	if err != nil {
		return "", nil, err
	}
	if kt.served != nil {
		f, _, err := rofile.Open(path)
		if err == nil {
			err = kt.served.Add(path, f)
		}
		if err != nil {
			return "", nil, err
		}
	}
	if len(notes) > 3 {
		notes = append(notes[:3:3], fmt.Sprintf("and %d more left out of the symbol object", len(notes)-3))
	}
	return path, notes, nil
}

// OpenFile serves gdb's vFile:open: only the exact names of the files the
// server opened for gdb. A module file joins them when the library list
// is made, so a name not yet known waits for that list once.
func (kt *kernelTarget) OpenFile(name string) (gdbstub.File, error) {
	if kt.served == nil {
		return nil, gdbfiles.ErrNotServed
	}
	if !kt.served.Has(name) {
		kt.LibrariesXML()
	}
	h, err := kt.served.Open(name)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(kt.vmlinux); err == nil && kt.vmlinux != "" && name == abs {
		return gdbfiles.Patched(h, kt.vmlinuxView(h)), nil
	}
	return h, nil
}

// vmlinuxView is how the served vmlinux differs from the file
// (gdbfiles.PerCPUView): gdb that loads it through the connection, as the
// executable qXfer:exec-file names, keeps the per-CPU section at its link
// address when qOffsets moves the rest by the KASLR offset. Worked out
// once, from the served file itself.
func (kt *kernelTarget) vmlinuxView(h gdbstub.File) []gdbfiles.Patch {
	kt.viewOnce.Do(func() {
		p, err := gdbfiles.PerCPUView(h)
		if err != nil && kt.libLog != nil {
			kt.libLog(fmt.Sprintf("%s is served as it is: %v", kt.vmlinux, err))
		}
		kt.view = p
	})
	return kt.view
}

func (kt *kernelTarget) TargetXML(annex string) ([]byte, bool) {
	if annex != "target.xml" {
		return nil, false
	}
	return targetXML, true
}

// targetXML declares amd64 with the registers a dump can hold: the core
// set, orig_rax and the segment bases. The OS ABI is "none": under
// GNU/Linux gdb would look for user-space SVR4 shared libraries, whereas
// with none it asks the target (qXfer:libraries), which is how the kernel's
// modules reach gdb, each section at its own address.
var targetXML = func() []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<osabi>none</osabi>
<feature name="org.gnu.gdb.i386.core">
`)
	types := map[string]string{"rip": "code_ptr", "rsp": "data_ptr", "rbp": "data_ptr", "eflags": "int"}
	section := func(name string) {
		b.WriteString("</feature>\n<feature name=\"" + name + "\">\n")
	}
	for _, l := range gdbRegLayout {
		switch l.name {
		case "orig_rax":
			section("org.gnu.gdb.i386.linux")
		case "fs_base":
			section("org.gnu.gdb.i386.segments")
		}
		typ := types[l.name]
		switch {
		case typ != "":
		case strings.HasPrefix(l.name, "st"):
			typ = "i387_ext"
		default:
			typ = "int"
		}
		group := ""
		if l.reg == noReg { // the x87 state, which no dump holds
			group = ` group="float"`
		}
		fmt.Fprintf(&b, "  <reg name=\"%s\" bitsize=\"%d\" type=\"%s\"%s/>\n", l.name, l.size*8, typ, group)
	}
	b.WriteString("</feature>\n</target>\n")
	return b.Bytes()
}()
