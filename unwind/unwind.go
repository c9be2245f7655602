package unwind

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

// Memory reads the target's memory.
type Memory interface {
	ReadU64(addr uint64) (uint64, error)
}

// Kind says how a frame was entered.
type Kind int

const (
	KindCall         Kind = iota // a return address
	KindException                // a full pt_regs (interrupt, exception, syscall)
	KindIRET                     // only the hardware IRET frame
	KindFramePointer             // no ORC entry: recovered by rbp chain (less reliable)
)

func (k Kind) String() string {
	return [...]string{"call", "exception", "iret", "frame pointer"}[k]
}

// Frame is one level of a backtrace: where the code was, and the
// registers there. For KindException the registers come from the pt_regs
// at PtRegsAddr.
type Frame struct {
	PC, SP     uint64
	Regs       amd64.Regs
	Kind       Kind
	PtRegsAddr uint64
	// UserMode is set on the exception frame that returns to user space;
	// the backtrace ends there.
	UserMode bool
}

// TableRange is an ORC table with the text range it describes.
type TableRange struct {
	Table      *Table
	Start, End uint64 // [Start, End)
}

// Unwinder walks kernel stacks.
type Unwinder struct {
	Tables []TableRange
	CFI    *CFI // optional: where ORC has no usable entry
	Mem    Memory
	// PtRegs is where struct pt_regs saves each register (r15, r14, ...,
	// ip, cs, flags, sp, ss), from the kernel's type information.
	PtRegs    amd64.Layout
	MaxFrames int // 0: 128
	// FunctionStart, if set, says whether pc is the first instruction of
	// a function. There a call has just pushed the return address at rsp,
	// which unwinds a CPU stopped on the entry of code whose unwind data
	// gives up (retpoline thunks are marked end-of-stack).
	FunctionStart func(pc uint64) bool
	// IsText, if set, says whether pc is kernel or module code. An ORC
	// step whose return address is not code is checked against DWARF CFI:
	// an objtool that did not know gcc's .cold subfunctions emitted no
	// entries for them, so the previous function's last entry covers them
	// and reads the return address from the wrong slot.
	IsText func(pc uint64) bool
	// FramePointers says the kernel is unwound by its rbp chain
	// (CONFIG_UNWINDER_FRAME_POINTER, a kernel without ORC): frames found
	// that way are calls, not guesses, and an rbp of 0 ends the stack as
	// it ends the kernel's own frame-pointer unwinder.
	FramePointers bool
	// Code, if set, reads instructions: where neither ORC nor CFI
	// describes a frame, its rule is derived from the function's own
	// code (Derive). FunctionStart must be set too.
	Code CodeReader

	derived sync.Map // pc -> derivedRule
}

type derivedRule struct {
	e   Entry
	err error
}

// HasRule says whether ORC (an entry other than undefined) or the CFI
// describes pc.
func (u *Unwinder) HasRule(pc uint64) bool {
	if e, ok := u.find(pc); ok && e.Type != typeUndefined {
		return true
	}
	return u.CFI.covers(pc)
}

// DerivedEntry is the rule Derive finds for pc (cached), for a frame
// whose pc has no ORC entry and no CFI.
func (u *Unwinder) DerivedEntry(pc uint64) (Entry, error) {
	if u.Code == nil || u.FunctionStart == nil {
		return Entry{}, ErrNotDerivable
	}
	if r, ok := u.derived.Load(pc); ok {
		return r.(derivedRule).e, r.(derivedRule).err
	}
	e, err := Derive(u.Code, pc, u.FunctionStart)
	u.derived.Store(pc, derivedRule{e, err})
	return e, err
}

// Stop reasons, wrapped in the error Unwind returns with the frames it found.
var (
	ErrNoORC      = errors.New("no unwind information for this address")
	ErrBadFrame   = errors.New("the unwind data says this frame cannot be unwound")
	ErrLoop       = errors.New("the stack does not progress")
	ErrTooDeep    = errors.New("too many frames")
	ErrNoMemory   = errors.New("stack memory unreadable")
	ErrNoRegister = errors.New("the unwind data needs a register that is not known")
)

func (u *Unwinder) find(pc uint64) (Entry, bool) {
	for _, t := range u.Tables {
		if pc >= t.Start && pc < t.End {
			return t.Table.Find(pc)
		}
	}
	return Entry{}, false
}

// Unwind returns the frames from start outward. exactPC says start's rip
// is the instruction itself (a CPU stopped by the crash or an NMI), not a
// return address (a sleeping task's ret_addr). It ends without error at
// the end of the kernel stack or at user space; otherwise the error says
// why it stopped, and the frames found so far are still returned.
func (u *Unwinder) Unwind(start amd64.Regs, exactPC bool) ([]Frame, error) {
	max := u.MaxFrames
	if max == 0 {
		max = 128
	}
	regs := start
	pc, ok := regs.Get(amd64.RIP)
	if !ok {
		return nil, fmt.Errorf("%w: rip", ErrNoRegister)
	}
	sp, ok := regs.Get(amd64.RSP)
	if !ok {
		return nil, fmt.Errorf("%w: rsp", ErrNoRegister)
	}
	frames := []Frame{{PC: pc, SP: sp, Regs: regs, Kind: KindCall}}
	signal := exactPC
	seen := map[[2]uint64]bool{}
	for {
		if len(frames) >= max {
			return frames, ErrTooDeep
		}
		cur := &frames[len(frames)-1]
		if cs, ok := cur.Regs.Get(amd64.CS); ok && cs&3 == 3 {
			cur.UserMode = true
			return frames, nil
		}
		key := [2]uint64{cur.PC, cur.SP}
		if seen[key] {
			return frames, ErrLoop
		}
		seen[key] = true
		lookup := cur.PC
		if !signal {
			lookup-- // a return address: look up the call instruction
		}
		e, found := u.find(lookup)
		var next Frame
		var err error
		if found && e.Type != typeUndefined {
			next, err = u.step(e, cur.Regs)
			if err == nil && next.Kind == KindCall && u.CFI != nil && u.IsText != nil && !u.IsText(next.PC) {
				if c, cerr := u.CFI.step(lookup, cur.Regs, u.read); cerr == nil && u.IsText(c.Regs.Value(amd64.RIP)) {
					c.PC = c.Regs.Value(amd64.RIP)
					next = c
				}
			}
		} else {
			err = ErrNoORC
		}
		if signal && (errors.Is(err, errEndOfStack) || errors.Is(err, ErrNoORC)) && u.FunctionStart != nil && u.FunctionStart(cur.PC) {
			// Stopped exactly on a function's first instruction: the
			// return address is at rsp whatever the unwind data says.
			if ra, rerr := u.read(cur.SP); rerr == nil && ra != 0 {
				var nr amd64.Regs
				nr.Set(amd64.RIP, ra)
				nr.Set(amd64.RSP, cur.SP+8)
				if v, ok := cur.Regs.Get(amd64.RBP); ok {
					nr.Set(amd64.RBP, v)
				}
				next, err = Frame{PC: ra, SP: cur.SP + 8, Regs: nr, Kind: KindCall}, nil
			}
		}
		if errors.Is(err, ErrNoORC) || (err != nil && !found) {
			// No usable ORC entry: DWARF CFI, then frame pointers.
			err = ErrNoORC
			if u.CFI != nil {
				next, err = u.CFI.step(lookup, cur.Regs, u.read)
				if err == nil {
					next.PC = next.Regs.Value(amd64.RIP)
				}
			}
			if err != nil && !u.FramePointers {
				// The function's own code says how it returns.
				if e, derr := u.DerivedEntry(cur.PC); derr == nil {
					if n, serr := u.step(e, cur.Regs); serr == nil && n.PC != 0 && (u.IsText == nil || u.IsText(n.PC)) {
						next, err = n, nil
					}
				}
			}
			if err != nil {
				next, err = u.framePointer(cur.Regs)
			}
		}
		if errors.Is(err, errEndOfStack) {
			return frames, nil
		}
		if err != nil {
			return frames, fmt.Errorf("at 0x%x: %w", cur.PC, err)
		}
		if next.PC == 0 {
			if next.Kind == KindCall || next.Kind == KindFramePointer {
				// A return address of 0 is no caller: the unwind data
				// does not describe this code.
				return frames, fmt.Errorf("at 0x%x: %w: return address 0 at 0x%x", cur.PC, ErrBadFrame, next.SP-8)
			}
			// A kernel thread's pt_regs at the stack top is empty.
			return frames, nil
		}
		signal = next.Kind == KindException || next.Kind == KindIRET || (found && e.Signal && next.Kind != KindCall)
		frames = append(frames, next)
	}
}

var errEndOfStack = errors.New("end of stack")

func (u *Unwinder) read(addr uint64) (uint64, error) {
	v, err := u.Mem.ReadU64(addr)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoMemory, err)
	}
	return v, nil
}

// step applies one ORC entry (the kernel's unwind_next_frame).
func (u *Unwinder) step(e Entry, r amd64.Regs) (Frame, error) {
	switch e.Type {
	case typeEndOfStack:
		return Frame{}, errEndOfStack
	case typeUndefined:
		return Frame{}, ErrBadFrame
	}
	reg := func(x amd64.Reg) (uint64, error) {
		v, ok := r.Get(x)
		if !ok {
			return 0, fmt.Errorf("%w: %v", ErrNoRegister, x)
		}
		return v, nil
	}
	var cfa uint64
	var err error
	switch e.SPReg {
	case regSP:
		cfa, err = reg(amd64.RSP)
		cfa += uint64(int64(e.SPOffset))
	case regBP:
		cfa, err = reg(amd64.RBP)
		cfa += uint64(int64(e.SPOffset))
	case regSPIndirect:
		var p uint64
		if p, err = reg(amd64.RSP); err == nil {
			cfa, err = u.read(p)
			cfa += uint64(int64(e.SPOffset))
		}
	case regBPIndirect:
		var p uint64
		if p, err = reg(amd64.RBP); err == nil {
			cfa, err = u.read(p + uint64(int64(e.SPOffset)))
		}
	case regR10:
		cfa, err = reg(amd64.R10)
	case regR13:
		cfa, err = reg(amd64.R13)
	case regDI:
		cfa, err = reg(amd64.RDI)
	case regDX:
		cfa, err = reg(amd64.RDX)
	case regAX:
		cfa, err = reg(amd64.RAX)
	default:
		return Frame{}, fmt.Errorf("%w: sp register %d", ErrBadFrame, e.SPReg)
	}
	if err != nil {
		return Frame{}, err
	}
	var next Frame
	oldBP, bpKnown := r.Get(amd64.RBP)
	switch e.Type {
	case typeCall:
		ip, err := u.read(cfa - 8)
		if err != nil {
			return Frame{}, err
		}
		var nr amd64.Regs
		// Callee-saved registers other than rbp are not tracked by ORC.
		nr.Set(amd64.RIP, ip)
		nr.Set(amd64.RSP, cfa)
		if bpKnown {
			nr.Set(amd64.RBP, oldBP)
		}
		next = Frame{PC: ip, SP: cfa, Regs: nr, Kind: KindCall}
	case typeRegs:
		nr, err := u.readPtRegs(cfa, false)
		if err != nil {
			return Frame{}, err
		}
		next = Frame{PC: nr.Value(amd64.RIP), SP: nr.Value(amd64.RSP), Regs: nr, Kind: KindException, PtRegsAddr: cfa}
	case typeRegsPartial:
		// Only the IRET frame (ip, cs, flags, sp, ss) is at cfa; other
		// registers keep their values.
		nr := r
		ipOff, _ := u.PtRegs.Offset(amd64.RIP)
		base := cfa - ipOff
		for _, x := range []amd64.Reg{amd64.RIP, amd64.CS, amd64.EFLAGS, amd64.RSP, amd64.SS} {
			off, ok := u.PtRegs.Offset(x)
			if !ok {
				return Frame{}, fmt.Errorf("%w: pt_regs layout lacks %v", ErrBadFrame, x)
			}
			v, err := u.read(base + off)
			if err != nil {
				return Frame{}, err
			}
			nr.Set(x, v)
		}
		next = Frame{PC: nr.Value(amd64.RIP), SP: nr.Value(amd64.RSP), Regs: nr, Kind: KindIRET, PtRegsAddr: base}
	}
	// rbp of the caller.
	switch e.BPReg {
	case regPrevSP:
		v, err := u.read(cfa + uint64(int64(e.BPOffset)))
		if err != nil {
			return Frame{}, err
		}
		next.Regs.Set(amd64.RBP, v)
	case regBP:
		if !bpKnown {
			return Frame{}, fmt.Errorf("%w: rbp", ErrNoRegister)
		}
		v, err := u.read(oldBP + uint64(int64(e.BPOffset)))
		if err != nil {
			return Frame{}, err
		}
		next.Regs.Set(amd64.RBP, v)
	}
	return next, nil
}

// readPtRegs reads a whole struct pt_regs.
func (u *Unwinder) readPtRegs(addr uint64, _ bool) (amd64.Regs, error) {
	var r amd64.Regs
	if len(u.PtRegs.Fields) == 0 {
		return r, fmt.Errorf("%w: no pt_regs layout", ErrBadFrame)
	}
	for _, f := range u.PtRegs.Fields {
		v, err := u.read(addr + f.Off)
		if err != nil {
			return r, err
		}
		r.Set(f.Reg, v)
	}
	return r, nil
}

// framePointer steps by the rbp chain: the primary method on a
// frame-pointer kernel, else the fallback where no ORC entry or CFI covers
// pc. [rbp] is the caller's rbp, [rbp+8] the return address. An odd rbp marks a pt_regs
// address (the kernel's "encoded" frame pointer from entry code).
func (u *Unwinder) framePointer(r amd64.Regs) (Frame, error) {
	bp, ok := r.Get(amd64.RBP)
	if ok && bp == 0 && u.FramePointers {
		return Frame{}, errEndOfStack
	}
	if !ok || bp == 0 {
		return Frame{}, ErrNoORC
	}
	if bp&1 == 1 {
		addr := bp &^ 1
		nr, err := u.readPtRegs(addr, false)
		if err != nil {
			return Frame{}, err
		}
		return Frame{PC: nr.Value(amd64.RIP), SP: nr.Value(amd64.RSP), Regs: nr, Kind: KindException, PtRegsAddr: addr}, nil
	}
	caller, err := u.read(bp)
	if err != nil {
		return Frame{}, err
	}
	ip, err := u.read(bp + 8)
	if err != nil {
		return Frame{}, err
	}
	var nr amd64.Regs
	nr.Set(amd64.RIP, ip)
	nr.Set(amd64.RSP, bp+16)
	nr.Set(amd64.RBP, caller)
	kind := KindFramePointer
	if u.FramePointers {
		kind = KindCall
	}
	return Frame{PC: ip, SP: bp + 16, Regs: nr, Kind: kind}, nil
}
