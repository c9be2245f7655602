package unwind

import (
	"errors"
	"fmt"
)

// Reg numbers registers as DWARF does on x86_64.
type Reg int

const (
	RAX Reg = iota
	RDX
	RCX
	RBX
	RSI
	RDI
	RBP
	RSP
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
	RIP
	EFLAGS
	CS
	SS
	NumRegs
)

var regNames = [NumRegs]string{"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss"}

func (r Reg) String() string {
	if r >= 0 && r < NumRegs {
		return regNames[r]
	}
	return fmt.Sprintf("Reg(%d)", int(r))
}

// Regs is a register set where only Known registers mean anything.
type Regs struct {
	Value [NumRegs]uint64
	Known [NumRegs]bool
}

// Set stores a known value.
func (r *Regs) Set(reg Reg, v uint64) { r.Value[reg], r.Known[reg] = v, true }

// Get returns a register and whether it is known.
func (r *Regs) Get(reg Reg) (uint64, bool) { return r.Value[reg], r.Known[reg] }

// Memory reads the target's memory.
type Memory interface {
	ReadU64(addr uint64) (uint64, error)
}

// PtRegs gives the byte offset in struct pt_regs of each register it
// saves (from BTF: r15, r14, ..., ip, cs, flags, sp, ss).
type PtRegs map[Reg]uint64

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
	Regs       Regs
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
	Tables    []TableRange
	CFI       *CFI // optional: where ORC has no usable entry
	Mem       Memory
	PtRegs    PtRegs
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
func (u *Unwinder) Unwind(start Regs, exactPC bool) ([]Frame, error) {
	max := u.MaxFrames
	if max == 0 {
		max = 128
	}
	regs := start
	pc, ok := regs.Get(RIP)
	if !ok {
		return nil, fmt.Errorf("%w: rip", ErrNoRegister)
	}
	sp, ok := regs.Get(RSP)
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
		if cs, ok := cur.Regs.Get(CS); ok && cs&3 == 3 {
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
				if c, cerr := u.CFI.step(lookup, cur.Regs, u.read); cerr == nil && u.IsText(c.Regs.Value[RIP]) {
					c.PC = c.Regs.Value[RIP]
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
				var nr Regs
				nr.Set(RIP, ra)
				nr.Set(RSP, cur.SP+8)
				if v, ok := cur.Regs.Get(RBP); ok {
					nr.Set(RBP, v)
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
					next.PC = next.Regs.Value[RIP]
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
func (u *Unwinder) step(e Entry, r Regs) (Frame, error) {
	switch e.Type {
	case typeEndOfStack:
		return Frame{}, errEndOfStack
	case typeUndefined:
		return Frame{}, ErrBadFrame
	}
	reg := func(x Reg) (uint64, error) {
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
		cfa, err = reg(RSP)
		cfa += uint64(int64(e.SPOffset))
	case regBP:
		cfa, err = reg(RBP)
		cfa += uint64(int64(e.SPOffset))
	case regSPIndirect:
		var p uint64
		if p, err = reg(RSP); err == nil {
			cfa, err = u.read(p)
			cfa += uint64(int64(e.SPOffset))
		}
	case regBPIndirect:
		var p uint64
		if p, err = reg(RBP); err == nil {
			cfa, err = u.read(p + uint64(int64(e.SPOffset)))
		}
	case regR10:
		cfa, err = reg(R10)
	case regR13:
		cfa, err = reg(R13)
	case regDI:
		cfa, err = reg(RDI)
	case regDX:
		cfa, err = reg(RDX)
	case regAX:
		cfa, err = reg(RAX)
	default:
		return Frame{}, fmt.Errorf("%w: sp register %d", ErrBadFrame, e.SPReg)
	}
	if err != nil {
		return Frame{}, err
	}
	var next Frame
	oldBP, bpKnown := r.Get(RBP)
	switch e.Type {
	case typeCall:
		ip, err := u.read(cfa - 8)
		if err != nil {
			return Frame{}, err
		}
		var nr Regs
		// Callee-saved registers other than rbp are not tracked by ORC.
		nr.Set(RIP, ip)
		nr.Set(RSP, cfa)
		if bpKnown {
			nr.Set(RBP, oldBP)
		}
		next = Frame{PC: ip, SP: cfa, Regs: nr, Kind: KindCall}
	case typeRegs:
		nr, err := u.readPtRegs(cfa, false)
		if err != nil {
			return Frame{}, err
		}
		next = Frame{PC: nr.Value[RIP], SP: nr.Value[RSP], Regs: nr, Kind: KindException, PtRegsAddr: cfa}
	case typeRegsPartial:
		// Only the IRET frame (ip, cs, flags, sp, ss) is at cfa; other
		// registers keep their values.
		nr := r
		ipOff := u.PtRegs[RIP]
		base := cfa - ipOff
		for _, x := range []Reg{RIP, CS, EFLAGS, RSP, SS} {
			off, ok := u.PtRegs[x]
			if !ok {
				return Frame{}, fmt.Errorf("%w: pt_regs layout lacks %v", ErrBadFrame, x)
			}
			v, err := u.read(base + off)
			if err != nil {
				return Frame{}, err
			}
			nr.Set(x, v)
		}
		next = Frame{PC: nr.Value[RIP], SP: nr.Value[RSP], Regs: nr, Kind: KindIRET, PtRegsAddr: base}
	}
	// rbp of the caller.
	switch e.BPReg {
	case regPrevSP:
		v, err := u.read(cfa + uint64(int64(e.BPOffset)))
		if err != nil {
			return Frame{}, err
		}
		next.Regs.Set(RBP, v)
	case regBP:
		if !bpKnown {
			return Frame{}, fmt.Errorf("%w: rbp", ErrNoRegister)
		}
		v, err := u.read(oldBP + uint64(int64(e.BPOffset)))
		if err != nil {
			return Frame{}, err
		}
		next.Regs.Set(RBP, v)
	}
	return next, nil
}

// readPtRegs reads a whole struct pt_regs.
func (u *Unwinder) readPtRegs(addr uint64, _ bool) (Regs, error) {
	var r Regs
	if len(u.PtRegs) == 0 {
		return r, fmt.Errorf("%w: no pt_regs layout", ErrBadFrame)
	}
	for reg, off := range u.PtRegs {
		v, err := u.read(addr + off)
		if err != nil {
			return r, err
		}
		r.Set(reg, v)
	}
	return r, nil
}

// framePointer steps by the rbp chain: the primary method on a
// frame-pointer kernel, else the fallback where no ORC entry or CFI covers
// pc. [rbp] is the caller's rbp, [rbp+8] the return address. An odd rbp marks a pt_regs
// address (the kernel's "encoded" frame pointer from entry code).
func (u *Unwinder) framePointer(r Regs) (Frame, error) {
	bp, ok := r.Get(RBP)
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
		return Frame{PC: nr.Value[RIP], SP: nr.Value[RSP], Regs: nr, Kind: KindException, PtRegsAddr: addr}, nil
	}
	caller, err := u.read(bp)
	if err != nil {
		return Frame{}, err
	}
	ip, err := u.read(bp + 8)
	if err != nil {
		return Frame{}, err
	}
	var nr Regs
	nr.Set(RIP, ip)
	nr.Set(RSP, bp+16)
	nr.Set(RBP, caller)
	kind := KindFramePointer
	if u.FramePointers {
		kind = KindCall
	}
	return Frame{PC: ip, SP: bp + 16, Regs: nr, Kind: kind}, nil
}
