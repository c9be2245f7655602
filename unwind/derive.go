package unwind

import (
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Deriving a frame's unwind rule from its code, where neither ORC nor
// DWARF CFI describes it: objtool emits no ORC for a function whose stack
// state it cannot follow (inline asm such as crash_setup_regs' pushf/pop
// in __crash_kexec, where the panicking CPU's saved registers point), and
// without the vmlinux there is no compiler CFI either. The function's own
// instructions say how it leaves: following them from pc to its return
// (or tail call), counting what each does to rsp and where rbp is
// restored from, gives the CFA and the caller's rbp exactly as an ORC
// entry would. Nothing is executed and no register value is assumed: the
// result is a rule relative to rsp or rbp at pc, and a path that meets
// an instruction whose effect on the stack is not plain gives up.

// CodeReader reads instruction bytes at a run-time address.
type CodeReader interface {
	ReadCode(p []byte, addr uint64) error
}

// ErrNotDerivable says the code from pc to its return could not be
// followed (an indirect jump, an unknown instruction, a write to rsp that
// is not plain arithmetic, or too long a path).
var ErrNotDerivable = errors.New("no unwind rule follows from the code")

// maxDeriveInsns bounds the instructions followed from one pc: an
// epilogue is a few dozen; a path longer than this is not one.
const maxDeriveInsns = 1024

// base says what the CFA is counted from at pc.
type base uint8

const (
	baseSP base = iota // rsp at pc
	baseBP             // rbp at pc (after a leave or mov %rbp,%rsp)
)

// bpState says where the caller's rbp is while following the code.
type bpState uint8

const (
	bpInReg     bpState = iota // still in rbp: not touched since pc
	bpOnStack                  // popped from the stack slot at bpSlot
	bpClobbered                // rbp was written and not restored
)

type deriveState struct {
	pc     uint64
	base   base
	delta  int64 // current rsp = base + delta
	bp     bpState
	bpBase base
	bpSlot int64 // caller's rbp at bpBase + bpSlot, when bpOnStack
	// rbpSP says rbp currently equals rsp-at-pc + rbpOff (after a mov
	// %rsp,%rbp on the path), so a later leave stays rsp-based.
	rbpSP  bool
	rbpOff int64
}

// Derive returns the ORC-style entry for pc found by following the code
// from pc to the function's return: the CFA (the address above the
// return address) as rsp or rbp at pc plus an offset, and where the
// caller's rbp is. isFunctionStart says whether an address is a
// function's first instruction (a jump there is a tail call: the return
// address is at rsp, as for ret).
func Derive(code CodeReader, pc uint64, isFunctionStart func(uint64) bool) (Entry, error) {
	work := []deriveState{{pc: pc}}
	seen := map[uint64]bool{}
	steps := 0
	var lastErr error = ErrNotDerivable
	var buf [16]byte
	for len(work) > 0 {
		s := work[len(work)-1]
		work = work[:len(work)-1]
	path:
		for {
			if seen[s.pc] {
				break // joined a path already followed
			}
			seen[s.pc] = true
			if steps++; steps > maxDeriveInsns {
				return Entry{}, fmt.Errorf("%w: more than %d instructions from 0x%x", ErrNotDerivable, maxDeriveInsns, pc)
			}
			if s.pc != pc && isFunctionStart != nil && isFunctionStart(s.pc) {
				// Fell into the next function: the path ended in a call
				// that does not return.
				break
			}
			if err := code.ReadCode(buf[:], s.pc); err != nil {
				return Entry{}, fmt.Errorf("%w: code at 0x%x: %v", ErrNotDerivable, s.pc, err)
			}
			in, err := x86asm.Decode(buf[:], 64)
			if err != nil {
				lastErr = fmt.Errorf("%w: undecodable instruction at 0x%x", ErrNotDerivable, s.pc)
				break
			}
			next := s.pc + uint64(in.Len)
			switch in.Op {
			case x86asm.RET:
				return s.entry(pc)
			case x86asm.JMP:
				t, ok := relTarget(in, next)
				if !ok {
					lastErr = fmt.Errorf("%w: indirect jump at 0x%x", ErrNotDerivable, s.pc)
					break path
				}
				if isFunctionStart != nil && isFunctionStart(t) {
					// A tail call (or the return thunk): the callee
					// returns to this function's caller from here.
					return s.entry(pc)
				}
				s.pc = t
				continue
			case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE, x86asm.JL,
				x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO, x86asm.JP, x86asm.JS,
				x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ, x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
				if t, ok := relTarget(in, next); ok {
					taken := s
					taken.pc = t
					work = append(work, taken)
				}
			case x86asm.CALL:
				// The callee returns with rsp as it was (a call that
				// does not return ends its path at the next function).
			case x86asm.UD0, x86asm.UD1, x86asm.UD2, x86asm.INT, x86asm.HLT, x86asm.IRETQ, x86asm.IRETD, x86asm.IRET,
				x86asm.LRET, x86asm.SYSRET, x86asm.SYSEXIT:
				break path // a dead end (BUG(), trap) or not a normal return
			default:
				if in.Op == 0 {
					break path
				}
				if !s.apply(in) {
					lastErr = fmt.Errorf("%w: %v at 0x%x changes the stack in a way not followed", ErrNotDerivable, in.Op, s.pc)
					break path
				}
			}
			s.pc = next
		}
	}
	return Entry{}, lastErr
}

// stackSlot is what a push or pop moves rsp by: 8 in 64-bit mode, 2
// with an operand-size prefix (there is no 32-bit push there).
func stackSlot(in x86asm.Inst) int64 {
	if in.DataSize == 16 {
		return 2
	}
	return 8
}

// relTarget is a direct branch's target.
func relTarget(in x86asm.Inst, next uint64) (uint64, bool) {
	if r, ok := in.Args[0].(x86asm.Rel); ok {
		return next + uint64(int64(r)), true
	}
	return 0, false
}

func isSP(a x86asm.Arg) bool {
	return a == x86asm.RSP || a == x86asm.ESP || a == x86asm.SP || a == x86asm.SPB
}

func isBP(a x86asm.Arg) bool {
	return a == x86asm.RBP || a == x86asm.EBP || a == x86asm.BP || a == x86asm.BPB
}

// readsOnly lists instructions that write none of their operands.
var readsOnly = map[x86asm.Op]bool{
	x86asm.CMP: true, x86asm.TEST: true, x86asm.BT: true, x86asm.NOP: true, x86asm.PAUSE: true,
	x86asm.LFENCE: true, x86asm.MFENCE: true, x86asm.SFENCE: true, x86asm.PREFETCHT0: true,
	x86asm.PREFETCHT1: true, x86asm.PREFETCHT2: true, x86asm.PREFETCHNTA: true, x86asm.PREFETCHW: true,
	x86asm.CLFLUSH: true, x86asm.UCOMISD: true, x86asm.UCOMISS: true, x86asm.COMISD: true, x86asm.COMISS: true,
}

// apply follows one instruction that is not a branch; false if its effect
// on rsp cannot be followed.
func (s *deriveState) apply(in x86asm.Inst) bool {
	a0, a1 := in.Args[0], in.Args[1]
	switch in.Op {
	case x86asm.PUSH:
		s.delta -= stackSlot(in)
		return true
	case x86asm.PUSHF, x86asm.PUSHFQ:
		s.delta -= 8
		return true
	case x86asm.POPF, x86asm.POPFQ:
		s.delta += 8
		return true
	case x86asm.POP:
		if isSP(a0) {
			return false
		}
		if a0 == x86asm.RBP {
			if s.bp == bpInReg || s.bp == bpClobbered {
				s.bp, s.bpBase, s.bpSlot = bpOnStack, s.base, s.delta
			}
			s.rbpSP = false
		} else if isBP(a0) {
			return false
		}
		s.delta += stackSlot(in)
		return true
	case x86asm.LEAVE:
		// mov %rbp,%rsp; pop %rbp
		if !s.rspFromRBP(0) {
			return false
		}
		if s.bp == bpInReg || s.bp == bpClobbered {
			s.bp, s.bpBase, s.bpSlot = bpOnStack, s.base, s.delta
		}
		s.rbpSP = false
		s.delta += 8
		return true
	case x86asm.ENTER:
		return false
	}
	if isSP(a0) && !readsOnly[in.Op] {
		imm, isImm := a1.(x86asm.Imm)
		switch {
		case in.Op == x86asm.ADD && isImm && a0 == x86asm.RSP:
			s.delta += int64(imm)
		case in.Op == x86asm.SUB && isImm && a0 == x86asm.RSP:
			s.delta -= int64(imm)
		case in.Op == x86asm.MOV && a0 == x86asm.RSP && a1 == x86asm.RBP:
			return s.rspFromRBP(0)
		case in.Op == x86asm.LEA && a0 == x86asm.RSP:
			m, ok := a1.(x86asm.Mem)
			if !ok || m.Index != 0 || m.Segment != 0 {
				return false
			}
			switch m.Base {
			case x86asm.RSP:
				s.delta += m.Disp
			case x86asm.RBP:
				return s.rspFromRBP(m.Disp)
			default:
				return false
			}
		default:
			return false
		}
		return true
	}
	if x, ok := a1.(x86asm.Reg); ok && isSP(x) && in.Op == x86asm.XCHG {
		return false
	}
	if isBP(a0) && !readsOnly[in.Op] {
		// rbp written: the caller's value is gone from the register
		// (a pop restores it later on a normal path).
		if s.bp == bpInReg {
			s.bp = bpClobbered
		}
		s.rbpSP = false
		if a0 == x86asm.RBP {
			switch m := a1.(type) {
			case x86asm.Reg:
				if in.Op == x86asm.MOV && m == x86asm.RSP {
					s.rbpSP, s.rbpOff = true, s.delta
				}
			case x86asm.Mem:
				if in.Op == x86asm.LEA && m.Base == x86asm.RSP && m.Index == 0 && m.Segment == 0 {
					s.rbpSP, s.rbpOff = true, s.delta+m.Disp
				}
			}
		}
		if s.rbpSP && s.base != baseSP {
			s.rbpSP = false
		}
	}
	if x, ok := a1.(x86asm.Reg); ok && isBP(x) && in.Op == x86asm.XCHG {
		if s.bp == bpInReg {
			s.bp = bpClobbered
		}
		s.rbpSP = false
	}
	return true
}

// rspFromRBP sets rsp = rbp + off: rbp is either still rbp at pc (the
// rule becomes rbp-based) or a known offset from rsp at pc.
func (s *deriveState) rspFromRBP(off int64) bool {
	switch {
	case s.rbpSP && s.base == baseSP:
		s.delta = s.rbpOff + off
	case s.bp == bpInReg:
		s.base, s.delta = baseBP, off
	default:
		return false
	}
	return true
}

// entry is the rule at a return: the return address at rsp, so the CFA
// is rsp+8.
func (s *deriveState) entry(pc uint64) (Entry, error) {
	cfa := s.delta + 8
	e := Entry{Type: typeCall, SPReg: regSP, BPReg: regUndefined}
	if s.base == baseBP {
		e.SPReg = regBP
	}
	if cfa < -1<<15 || cfa >= 1<<15 {
		return Entry{}, fmt.Errorf("%w: a frame of %d bytes at 0x%x", ErrNotDerivable, cfa, pc)
	}
	e.SPOffset = int16(cfa)
	switch s.bp {
	case bpOnStack:
		if s.bpBase != s.base {
			return Entry{}, fmt.Errorf("%w: rbp restored from a slot not relative to the CFA at 0x%x", ErrNotDerivable, pc)
		}
		e.BPReg, e.BPOffset = regPrevSP, int16(s.bpSlot-cfa)
	case bpClobbered:
		return Entry{}, fmt.Errorf("%w: rbp is written and not restored on the way out of 0x%x", ErrNotDerivable, pc)
	}
	return e, nil
}
