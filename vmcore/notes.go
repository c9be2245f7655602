package vmcore

import (
	"encoding/binary"
	"fmt"
)

// ELF note types and names found in vmcores.
const (
	NT_PRSTATUS = 1 // name "CORE": struct elf_prstatus of one CPU

	noteNameCore       = "CORE"
	noteNameVMCOREINFO = "VMCOREINFO"
	noteNameQEMU       = "QEMU"
)

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

// parseNotes splits a PT_NOTE area (or the kdump note copy) into notes.
// A note whose header has namesz == 0 ends the area: /proc/vmcore pads
// per-CPU buffers with zeros. base is the file offset of data, for errors.
func parseNotes(file string, data []byte, base int64) ([]Note, error) {
	var notes []Note
	off := 0
	for off+12 <= len(data) {
		namesz := binary.LittleEndian.Uint32(data[off:])
		descsz := binary.LittleEndian.Uint32(data[off+4:])
		typ := binary.LittleEndian.Uint32(data[off+8:])
		if namesz == 0 && descsz == 0 {
			break
		}
		nameStart := off + 12
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

// Regs holds x86_64 general registers in the order of the kernel's
// struct user_regs_struct (NT_PRSTATUS pr_reg; struct pt_regs is the
// first 21 of them).
type Regs struct {
	R15, R14, R13, R12, RBP, RBX, R11, R10, R9, R8  uint64
	RAX, RCX, RDX, RSI, RDI, OrigRAX, RIP, CS       uint64
	EFLAGS, RSP, SS, FSBase, GSBase, DS, ES, FS, GS uint64
}

const userRegsSize = 27 * 8

func decodeRegs(b []byte) Regs {
	var v [27]uint64
	for i := range v {
		v[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return Regs{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
		v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17],
		v[18], v[19], v[20], v[21], v[22], v[23], v[24], v[25], v[26]}
}

// PRStatus is one CPU's NT_PRSTATUS note.
type PRStatus struct {
	Index int   // position among the dump's NT_PRSTATUS notes
	PID   int32 // pr_pid: the task running there (0 for idle); QEMU writes cpu+1
	Regs  Regs
}

// struct elf_prstatus on x86_64: pr_pid at 32, pr_reg at 112, size 336.
const (
	prstatusPIDOff  = 32
	prstatusRegOff  = 112
	prstatusMinSize = prstatusRegOff + userRegsSize
)

func decodePRStatus(file string, n Note, index int) (PRStatus, error) {
	if len(n.Desc) < prstatusMinSize {
		return PRStatus{}, formatErr(file, n.Offset, "NT_PRSTATUS note of %d bytes, want at least %d", len(n.Desc), prstatusMinSize)
	}
	return PRStatus{
		Index: index,
		PID:   int32(binary.LittleEndian.Uint32(n.Desc[prstatusPIDOff:])),
		Regs:  decodeRegs(n.Desc[prstatusRegOff:]),
	}, nil
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
	Index                                  int
	Version                                uint32
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
	CS, DS, ES, FS, GS, SS, LDT, TR        Segment
	GDT, IDT                               Segment
	CR                                     [5]uint64
}

const qemuCPUStateSize = 432

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
	gp := []*uint64{&s.RAX, &s.RBX, &s.RCX, &s.RDX, &s.RSI, &s.RDI, &s.RSP, &s.RBP,
		&s.R8, &s.R9, &s.R10, &s.R11, &s.R12, &s.R13, &s.R14, &s.R15, &s.RIP, &s.RFLAGS}
	for i, p := range gp {
		*p = le.Uint64(d[8+8*i:])
	}
	segs := []*Segment{&s.CS, &s.DS, &s.ES, &s.FS, &s.GS, &s.SS, &s.LDT, &s.TR, &s.GDT, &s.IDT}
	for i, p := range segs {
		o := 152 + 24*i
		*p = Segment{le.Uint32(d[o:]), le.Uint32(d[o+4:]), le.Uint32(d[o+8:]), le.Uint64(d[o+16:])}
	}
	for i := range s.CR {
		s.CR[i] = le.Uint64(d[392+8*i:])
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
		case n.Name == noteNameCore && n.Type == NT_PRSTATUS:
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
