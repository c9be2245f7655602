package vmcore

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

// ELF note types and names found in vmcores.
const (
	NT_PRSTATUS = 1 // name "CORE": struct elf_prstatus of one CPU

	NoteNameCore       = "CORE" // the name NT_PRSTATUS notes carry
	noteNameVMCOREINFO = "VMCOREINFO"
	noteNameQEMU       = "QEMU"
)

// NoteHeaderSize is the size of an ELF note header (Elf64_Nhdr: namesz,
// descsz, type).
const NoteHeaderSize = 12

// NoteSize is the size of one ELF note named name with a descriptor of
// descsz bytes: header, then name and descriptor each padded to 4 bytes.
func NoteSize(name string, descsz uint64) uint64 {
	return NoteHeaderSize + align4(uint64(len(name))+1) + align4(descsz)
}

// maxNotes bounds how many notes one dump may carry; kernels support at
// most 8192 CPUs and write two or three notes each.
const maxNotes = 1 << 16

// Note is one ELF note as stored in the dump.
type Note struct {
	Name   string
	Type   uint32
	Desc   []byte
	Offset int64 // offset of the note header in its file

	descOff int64 // offset of Desc in its file
}

// ParseNotes splits a PT_NOTE area (the kdump note copy, or a note buffer
// the kernel keeps in memory) into notes. A note whose header has
// namesz == 0 ends the area: /proc/vmcore pads per-CPU buffers with
// zeros. Errors name file and the offset base + n of the note at n.
func ParseNotes(file string, data []byte, base int64) ([]Note, error) {
	var notes []Note
	off := 0
	for off+NoteHeaderSize <= len(data) {
		namesz := binary.LittleEndian.Uint32(data[off:])
		descsz := binary.LittleEndian.Uint32(data[off+4:])
		typ := binary.LittleEndian.Uint32(data[off+8:])
		if namesz == 0 && descsz == 0 {
			break
		}
		nameStart := off + NoteHeaderSize
		nameEnd := uint64(nameStart) + uint64(namesz)
		descStart := align4(nameEnd)
		descEnd := descStart + uint64(descsz)
		if descEnd > uint64(len(data)) {
			return notes, formatErr(file, base+int64(off), "ELF note (namesz %d, descsz %d) runs past the end of the note area (%d bytes)", namesz, descsz, len(data))
		}
		name := data[nameStart:nameEnd]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		notes = append(notes, Note{Name: string(name), Type: typ, Desc: data[descStart:descEnd], Offset: base + int64(off), descOff: base + int64(descStart)})
		if len(notes) > maxNotes {
			return notes, formatErr(file, base+int64(off), "more than %d ELF notes", maxNotes)
		}
		off = int(align4(descEnd))
	}
	return notes, nil
}

func align4(x uint64) uint64 { return (x + 3) &^ 3 }

// PRStatus is one CPU's NT_PRSTATUS note.
type PRStatus struct {
	Index int   // position among the dump's NT_PRSTATUS notes
	PID   int32 // pr_pid: the task running there (0 for idle); QEMU writes cpu+1
	Regs  amd64.Regs
}

// PRStatusLayout places what is read of struct elf_prstatus: pr_pid, the
// registers pr_reg (a struct user_regs_struct) and the struct's size.
type PRStatusLayout struct {
	PIDOff, RegOff, Size uint64
}

// struct elf_prstatus of the x86_64 ELF core-file ABI (<linux/elfcore.h>):
// pr_pid after pr_info, pr_cursig, pr_sigpend and pr_sighold; pr_reg
// after the pids and the four struct timevals.
const (
	CorePRStatusPIDOff = 32
	CorePRStatusRegOff = 112
	CorePRStatusSize   = 336
)

// CorePRStatus returns the ABI layout of struct elf_prstatus, which
// /proc/vmcore's and QEMU's notes have.
func CorePRStatus() PRStatusLayout {
	return PRStatusLayout{PIDOff: CorePRStatusPIDOff, RegOff: CorePRStatusRegOff, Size: CorePRStatusSize}
}

// MinDesc is the smallest descriptor DecodePRStatus reads: through
// pr_reg (pr_fpvalid, after it, is not read).
// A layout from type information may be damaged: offsets so large the
// sum overflows ask for more than any descriptor holds.
func (l PRStatusLayout) MinDesc() uint64 {
	pid, reg := l.PIDOff+4, l.RegOff+amd64.UserRegsSize
	if pid < l.PIDOff || reg < l.RegOff {
		return math.MaxUint64
	}
	return max(pid, reg)
}

// DecodePRStatus decodes an NT_PRSTATUS note's descriptor laid out as l:
// pr_pid and the registers.
func DecodePRStatus(desc []byte, l PRStatusLayout) (pid int32, regs amd64.Regs, err error) {
	if uint64(len(desc)) < l.MinDesc() {
		return 0, regs, fmt.Errorf("NT_PRSTATUS note of %d bytes, want at least %d", len(desc), l.MinDesc())
	}
	regs, err = amd64.UserRegs().Decode(desc[l.RegOff:])
	if err != nil {
		return 0, regs, fmt.Errorf("NT_PRSTATUS pr_reg at %d: %w", l.RegOff, err)
	}
	return int32(binary.LittleEndian.Uint32(desc[l.PIDOff:])), regs, nil
}

func decodePRStatus(file string, n Note, index int) (PRStatus, error) {
	pid, regs, err := DecodePRStatus(n.Desc, CorePRStatus())
	if err != nil {
		return PRStatus{}, formatErr(file, n.Offset, "%v", err)
	}
	return PRStatus{Index: index, PID: pid, Regs: regs}, nil
}

// Segment is one segment register of QEMU's CPU state.
type Segment struct {
	Selector, Limit, Flags uint32
	Base                   uint64
}

// QEMUCPUState is QEMU's per-CPU "QEMU" note (target/i386/arch_dump.c,
// version 1): general registers, segments with their bases, control
// registers. It is what hypervisor dumps offer instead of kdump's notes.
type QEMUCPUState struct {
	Index   int
	Version uint32
	// Regs holds the general registers, rip, eflags, the segment
	// selectors and the fs and gs bases.
	Regs                            amd64.Regs
	CS, DS, ES, FS, GS, SS, LDT, TR Segment
	GDT, IDT                        Segment
	CR                              [5]uint64
}

// struct QEMUCPUState: version and size (u32 each), then u64 rax rbx rcx
// rdx rsi rdi rsp rbp r8-r15 rip rflags, ten QEMUCPUSegments (u32
// selector, limit, flags, pad; u64 base) and cr[5].
const (
	qemuGPOff        = 8
	qemuSegOff       = qemuGPOff + 18*8
	qemuSegSize      = 24
	qemuCROff        = qemuSegOff + 10*qemuSegSize
	qemuCPUStateSize = qemuCROff + 5*8
)

// qemuGP is the order of QEMUCPUState's u64 registers.
var qemuGP = [...]amd64.Reg{amd64.RAX, amd64.RBX, amd64.RCX, amd64.RDX, amd64.RSI, amd64.RDI, amd64.RSP, amd64.RBP,
	amd64.R8, amd64.R9, amd64.R10, amd64.R11, amd64.R12, amd64.R13, amd64.R14, amd64.R15, amd64.RIP, amd64.EFLAGS}

func qemuGPLayout() amd64.Layout {
	l := amd64.Layout{Name: "QEMU CPU note", Size: qemuCPUStateSize}
	for i, r := range qemuGP {
		l.Fields = append(l.Fields, amd64.Field{Reg: r, Off: uint64(qemuGPOff + 8*i)})
	}
	return l
}

func decodeQEMUCPUState(file string, n Note, index int) (QEMUCPUState, error) {
	d := n.Desc
	if len(d) < qemuCPUStateSize {
		return QEMUCPUState{}, formatErr(file, n.Offset, "QEMU CPU note of %d bytes, want %d", len(d), qemuCPUStateSize)
	}
	le := binary.LittleEndian
	s := QEMUCPUState{Index: index, Version: le.Uint32(d[0:])}
	if s.Version != 1 {
		return s, formatErr(file, n.Offset, "QEMU CPU note version %d, only version 1 is known", s.Version)
	}
	var err error
	if s.Regs, err = qemuGPLayout().Decode(d); err != nil {
		return s, formatErr(file, n.Offset, "%v", err)
	}
	segs := []*Segment{&s.CS, &s.DS, &s.ES, &s.FS, &s.GS, &s.SS, &s.LDT, &s.TR, &s.GDT, &s.IDT}
	for i, p := range segs {
		o := qemuSegOff + qemuSegSize*i
		*p = Segment{le.Uint32(d[o:]), le.Uint32(d[o+4:]), le.Uint32(d[o+8:]), le.Uint64(d[o+16:])}
	}
	for reg, seg := range map[amd64.Reg]*Segment{amd64.CS: &s.CS, amd64.DS: &s.DS, amd64.ES: &s.ES, amd64.FS: &s.FS, amd64.GS: &s.GS, amd64.SS: &s.SS} {
		s.Regs.Set(reg, uint64(seg.Selector))
	}
	s.Regs.Set(amd64.FSBase, s.FS.Base)
	s.Regs.Set(amd64.GSBase, s.GS.Base)
	for i := range s.CR {
		s.CR[i] = le.Uint64(d[qemuCROff+8*i:])
	}
	return s, nil
}

// noteSet is what a dump's notes tell: registers per CPU and VMCOREINFO.
type noteSet struct {
	all        []Note
	prstatus   []PRStatus
	qemu       []QEMUCPUState
	vmcoreinfo []byte
	vmcoreOff  int64 // file offset of the VMCOREINFO text
}

func classifyNotes(file string, notes []Note) (*noteSet, error) {
	ns := &noteSet{all: notes}
	for _, n := range notes {
		switch {
		case n.Name == NoteNameCore && n.Type == NT_PRSTATUS:
			p, err := decodePRStatus(file, n, len(ns.prstatus))
			if err != nil {
				return nil, err
			}
			ns.prstatus = append(ns.prstatus, p)
		case n.Name == noteNameQEMU:
			q, err := decodeQEMUCPUState(file, n, len(ns.qemu))
			if err != nil {
				return nil, err
			}
			ns.qemu = append(ns.qemu, q)
		case n.Name == noteNameVMCOREINFO:
			ns.vmcoreinfo = n.Desc
			ns.vmcoreOff = n.descOff
		}
	}
	return ns, nil
}

func (ns *noteSet) String() string {
	return fmt.Sprintf("%d notes (%d NT_PRSTATUS, %d QEMU, VMCOREINFO %d bytes)", len(ns.all), len(ns.prstatus), len(ns.qemu), len(ns.vmcoreinfo))
}
