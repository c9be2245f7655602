package amd64

import (
	"encoding/binary"
	"fmt"
)

// Reg is an x86-64 register, numbered as the psABI's DWARF register
// mapping (System V AMD64 ABI, "DWARF Register Number Mapping"), so CFI
// rules index it directly.
type Reg int

const (
	RAX Reg = 0
	RDX Reg = 1
	RCX Reg = 2
	RBX Reg = 3
	RSI Reg = 4
	RDI Reg = 5
	RBP Reg = 6
	RSP Reg = 7
	R8  Reg = 8
	R9  Reg = 9
	R10 Reg = 10
	R11 Reg = 11
	R12 Reg = 12
	R13 Reg = 13
	R14 Reg = 14
	R15 Reg = 15
	// RIP is DWARF's return address column.
	RIP    Reg = 16
	EFLAGS Reg = 49
	ES     Reg = 50
	CS     Reg = 51
	SS     Reg = 52
	DS     Reg = 53
	FS     Reg = 54
	GS     Reg = 55
	FSBase Reg = 58
	GSBase Reg = 59
)

// PrivateBase starts the numbers of registers DWARF has none for. The
// psABI's numbers stay below it (its highest, APX's r31, is 145).
const PrivateBase Reg = 0x100

// OrigRAX is the kernel's orig_rax: the syscall number (or, for an
// interrupt, the negated vector) the entry code saved. It is no machine
// register, so DWARF has no number for it.
const OrigRAX = PrivateBase

// regs lists every register a Regs holds, in DWARF order; a register's
// position here is its slot in Regs.
var regs = [...]Reg{RAX, RDX, RCX, RBX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15, RIP,
	EFLAGS, ES, CS, SS, DS, FS, GS, FSBase, GSBase, OrigRAX}

// NumRegs is how many registers a Regs holds.
const NumRegs = len(regs)

// names are the registers' names as gdb and the kernel spell them.
var names = [NumRegs]string{"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip",
	"eflags", "es", "cs", "ss", "ds", "fs", "gs", "fs_base", "gs_base", "orig_rax"}

// slotOf maps a DWARF number to its slot in regs, -1 for none.
var slotOf = func() (s [GSBase + 1]int8) {
	for i := range s {
		s[i] = -1
	}
	for i, r := range regs {
		if r < PrivateBase {
			s[r] = int8(i)
		}
	}
	return s
}()

// slot returns r's index in regs, or false for a register Regs cannot
// hold (a vector register, say, which CFI may name).
func slot(r Reg) (int, bool) {
	if r == OrigRAX {
		return NumRegs - 1, true
	}
	if r >= 0 && int(r) < len(slotOf) && slotOf[r] >= 0 {
		return int(slotOf[r]), true
	}
	return 0, false
}

// All returns every register a Regs holds, in DWARF order.
func All() []Reg { return append([]Reg(nil), regs[:]...) }

func (r Reg) String() string {
	if i, ok := slot(r); ok {
		return names[i]
	}
	return fmt.Sprintf("Reg(%d)", int(r))
}

// Regs is a register set where only Known registers mean anything. The
// zero value knows none.
type Regs struct {
	value [NumRegs]uint64
	known [NumRegs]bool
}

// Set stores a known value. A register a Regs cannot hold is dropped:
// nothing in a dump or a kernel stack saves one.
func (r *Regs) Set(reg Reg, v uint64) {
	if i, ok := slot(reg); ok {
		r.value[i], r.known[i] = v, true
	}
}

// Get returns a register and whether it is known.
func (r *Regs) Get(reg Reg) (uint64, bool) {
	if i, ok := slot(reg); ok {
		return r.value[i], r.known[i]
	}
	return 0, false
}

// Has says whether a register is known.
func (r *Regs) Has(reg Reg) bool {
	_, ok := r.Get(reg)
	return ok
}

// Value returns a register, 0 when it is not known.
func (r *Regs) Value(reg Reg) uint64 {
	v, _ := r.Get(reg)
	return v
}

// Forget makes a register unknown.
func (r *Regs) Forget(reg Reg) {
	if i, ok := slot(reg); ok {
		r.value[i], r.known[i] = 0, false
	}
}

// Field places one 8-byte little-endian register in a structure.
type Field struct {
	Reg Reg
	Off uint64
}

// Layout says where a structure holds registers: struct
// user_regs_struct (UserRegs), or struct pt_regs and struct
// inactive_task_frame as a kernel's type information lays them out.
type Layout struct {
	Name   string // the structure, for errors
	Size   uint64 // bytes a decoded buffer must hold
	Fields []Field
}

// Offset returns where the layout holds reg.
func (l Layout) Offset(reg Reg) (uint64, bool) {
	for _, f := range l.Fields {
		if f.Reg == reg {
			return f.Off, true
		}
	}
	return 0, false
}

// Decode reads the layout's registers from b, which starts the
// structure.
func (l Layout) Decode(b []byte) (Regs, error) {
	var r Regs
	if uint64(len(b)) < l.Size {
		return r, fmt.Errorf("%s of %d bytes, want %d", l.Name, len(b), l.Size)
	}
	for _, f := range l.Fields {
		// A layout from type information is checked here, not trusted.
		if f.Off > uint64(len(b)) || uint64(len(b))-f.Off < 8 {
			return r, fmt.Errorf("%s: %v at offset %d runs past its %d bytes", l.Name, f.Reg, f.Off, len(b))
		}
		r.Set(f.Reg, binary.LittleEndian.Uint64(b[f.Off:]))
	}
	return r, nil
}

// userRegsOrder is struct user_regs_struct (arch/x86/include/asm/user_64.h),
// the elf_gregset_t of NT_PRSTATUS's pr_reg: an ABI, fixed.
var userRegsOrder = [...]Reg{R15, R14, R13, R12, RBP, RBX, R11, R10, R9, R8,
	RAX, RCX, RDX, RSI, RDI, OrigRAX, RIP, CS, EFLAGS, RSP, SS, FSBase, GSBase, DS, ES, FS, GS}

// UserRegsCount is the number of registers in struct user_regs_struct
// (ELF_NGREG on x86-64).
const UserRegsCount = 27

// The table above holds exactly UserRegsCount registers.
var _ [UserRegsCount]Reg = userRegsOrder

// UserRegsSize is the size of struct user_regs_struct.
const UserRegsSize = UserRegsCount * 8

// UserRegs returns the layout of struct user_regs_struct.
func UserRegs() Layout {
	l := Layout{Name: "user_regs_struct", Size: UserRegsSize}
	for i, r := range userRegsOrder {
		l.Fields = append(l.Fields, Field{Reg: r, Off: uint64(8 * i)})
	}
	return l
}
