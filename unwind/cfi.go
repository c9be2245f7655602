package unwind

import (
	"encoding/binary"
	"fmt"

	"github.com/go-delve/delve/pkg/dwarf/frame"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

// CFI is DWARF call-frame information from .debug_frame, used where ORC
// has no usable entry (ORC marks some hand-written or inline-asm regions
// undefined; the compiler's CFI still describes them). delve's parser
// panics on malformed input, so every call into it is guarded.
type CFI struct {
	fdes frame.FrameDescriptionEntries
}

// ParseCFI parses .debug_frame of a kernel image loaded slide bytes above
// its link address.
func ParseCFI(debugFrame []byte, slide uint64) (c *CFI, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf(".debug_frame: malformed: %v", r)
		}
	}()
	fdes, err := frame.Parse(debugFrame, binary.LittleEndian, slide, 8, 0)
	if err != nil {
		return nil, fmt.Errorf(".debug_frame: %w", err)
	}
	// Parse returns FDEs in section order; lookups need them sorted.
	return &CFI{fdes: frame.FrameDescriptionEntries(nil).Append(fdes)}, nil
}

// dwarfRA is the return address column; amd64.Reg is DWARF's numbering,
// so CFI register numbers index it directly.
const dwarfRA = uint64(amd64.RIP)

// step unwinds one frame at pc with the CFI rules.
func (c *CFI) step(pc uint64, r amd64.Regs, read func(uint64) (uint64, error)) (next Frame, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("%w: CFI at 0x%x: %v", ErrBadFrame, pc, x)
		}
	}()
	fde, err := c.fdes.FDEForPC(pc)
	if err != nil {
		return Frame{}, ErrNoORC
	}
	ctx, err := fde.EstablishFrame(pc)
	if err != nil {
		return Frame{}, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if ctx.CFA.Rule != frame.RuleCFA || ctx.CFA.Reg >= uint64(amd64.RIP) {
		return Frame{}, fmt.Errorf("%w: CFA rule %d", ErrBadFrame, ctx.CFA.Rule)
	}
	base, ok := r.Get(amd64.Reg(ctx.CFA.Reg))
	if !ok {
		return Frame{}, fmt.Errorf("%w: %v", ErrNoRegister, amd64.Reg(ctx.CFA.Reg))
	}
	cfa := base + uint64(ctx.CFA.Offset)
	raRule, ok := ctx.Regs[dwarfRA]
	if !ok || raRule.Rule == frame.RuleUndefined {
		// delve's DW_CFA_restore resets to "undefined" instead of the CIE's
		// initial rule; on x86_64 that rule is always [CFA-8].
		raRule = frame.DWRule{Rule: frame.RuleOffset, Offset: -8}
	}
	var nr amd64.Regs
	nr.Set(amd64.RSP, cfa)
	for reg := amd64.RAX; reg < amd64.RIP; reg++ {
		if reg == amd64.RSP {
			continue
		}
		rule, has := ctx.Regs[uint64(reg)]
		v, known := r.Get(reg)
		switch {
		case !has || rule.Rule == frame.RuleSameVal:
			// Callee-saved registers keep their value; others are lost.
			if known && (reg == amd64.RBX || reg == amd64.RBP || reg >= amd64.R12) {
				nr.Set(reg, v)
			}
		case rule.Rule == frame.RuleOffset:
			x, err := read(cfa + uint64(rule.Offset))
			if err != nil {
				return Frame{}, err
			}
			nr.Set(reg, x)
		case rule.Rule == frame.RuleValOffset:
			nr.Set(reg, cfa+uint64(rule.Offset))
		case rule.Rule == frame.RuleRegister:
			if x, ok := r.Get(amd64.Reg(rule.Reg)); ok && rule.Reg < uint64(amd64.RIP) {
				nr.Set(reg, x)
			}
		}
	}
	if raRule.Rule != frame.RuleOffset {
		return Frame{}, fmt.Errorf("%w: return address rule %d", ErrBadFrame, raRule.Rule)
	}
	ra, err := read(cfa + uint64(raRule.Offset))
	if err != nil {
		return Frame{}, err
	}
	nr.Set(amd64.RIP, ra)
	return Frame{PC: ra, SP: cfa, Regs: nr, Kind: KindCall}, nil
}

// covers says whether an FDE describes pc.
func (c *CFI) covers(pc uint64) bool {
	if c == nil {
		return false
	}
	_, err := c.fdes.FDEForPC(pc)
	return err == nil
}
