package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

// This file translates ORC into DWARF call-frame information that a
// debugger without ORC support (gdb) can use. gdb looks an address up in
// the .debug_frame of every objfile it has loaded, in load order, so an
// extra object holding FDEs for what the vmlinux's own CFI leaves out
// (entry code, exception and interrupt frames, modules without debug info,
// user space) completes its unwinding without replacing anything the
// compiler described.

// CFIObject describes the object BuildCFIObject writes.
type CFIObject struct {
	// Tables are the ORC tables to translate, each with its text range.
	Tables []TableRange
	// Own is the CFI the debugger already has (the vmlinux's
	// .debug_frame, at run-time addresses); what it covers is left out.
	// Nil: everything ORC covers is described.
	Own *CFI
	// PtRegs is the struct pt_regs layout, for exception frames.
	PtRegs amd64.Layout
	// UserStart and UserEnd bound the user half of the address space: an
	// FDE there with an undefined return address makes the frame at a
	// user-mode pc the outermost. Both 0: no such FDE.
	UserStart, UserEnd uint64
	// Extra are rules for single addresses that ORC leaves undefined,
	// derived from the code (Unwinder.DerivedEntry): each replaces the
	// ORC row at its address.
	Extra []ExtraRule
	// MaxBytes bounds the object (DefaultMaxCFIObject if 0).
	MaxBytes int

	ruleCache map[Entry]map[int]string
}

// ExtraRule is an unwind rule for the one instruction at PC (for a
// caller's frame, the call instruction's last byte: return address - 1).
type ExtraRule struct {
	PC    uint64
	Entry Entry
}

// DefaultMaxCFIObject is far above what a kernel needs (its uncovered
// code is entry code and assembly: a few hundred KB of FDEs).
const DefaultMaxCFIObject = 64 << 20

// ErrCFIObjectTooLarge reports an object past CFIObject.MaxBytes.
var ErrCFIObjectTooLarge = errors.New("generated unwind object exceeds its size bound")

// DWARF call-frame instructions and expression operators used here.
const (
	cfaAdvanceLoc     = 0x40
	cfaAdvanceLoc1    = 0x02
	cfaAdvanceLoc2    = 0x03
	cfaAdvanceLoc4    = 0x04
	cfaUndefined      = 0x07
	cfaSameValue      = 0x08
	cfaDefCFA         = 0x0c
	cfaDefCFAExpr     = 0x0f
	cfaExpression     = 0x10
	cfaOffsetExtSF    = 0x11
	opDeref           = 0x06
	opConsts          = 0x11
	opDrop            = 0x13
	opPlus            = 0x22
	opPlusUconst      = 0x23
	opBreg0           = 0x70
	dataAlign         = -8
	dwarfEFLAGS       = 49 // DWARF numbers of rFLAGS, cs and ss on x86_64
	dwarfCS           = 51
	dwarfSS           = 52
	colCFA            = -1
	cieSignalAug      = "S" // gdb: the caller's pc is exact, not a return address
	elfHeaderSize     = 64
	elfSectionHdrSize = 64
	elfSymSize        = 24
)

// dwarfCol is the DWARF column of a register (amd64 numbers them so).
func dwarfCol(r amd64.Reg) int { return int(r) }

// The registers a full pt_regs gives the interrupted context, and those an
// IRET frame gives (rsp is the CFA in both).
var (
	fullRegs = []amd64.Reg{amd64.RAX, amd64.RDX, amd64.RCX, amd64.RBX, amd64.RSI, amd64.RDI, amd64.RBP, amd64.R8, amd64.R9,
		amd64.R10, amd64.R11, amd64.R12, amd64.R13, amd64.R14, amd64.R15, amd64.RIP, amd64.EFLAGS, amd64.CS, amd64.SS}
	iretRegs = []amd64.Reg{amd64.RIP, amd64.CS, amd64.EFLAGS, amd64.SS}
	// ruleCols is every column a row may set, in emission order.
	ruleCols = func() []int {
		c := []int{colCFA}
		for _, r := range fullRegs {
			c = append(c, dwarfCol(r))
		}
		return c
	}()
)

// row is one address range with one ORC entry's rules.
type row struct {
	start, end uint64
	e          Entry
	user       bool // the user-space FDE: the outermost frame
}

func (r row) signal() bool {
	return !r.user && r.e.Signal && (r.e.Type == typeRegs || r.e.Type == typeRegsPartial)
}

// Ranges returns the address ranges the CFI describes, sorted and merged.
func (c *CFI) Ranges() [][2]uint64 {
	var out [][2]uint64
	for _, f := range c.fdes {
		b, e := f.Begin(), f.End()
		if e <= b {
			continue
		}
		if n := len(out); n > 0 && b <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], e)
			continue
		}
		out = append(out, [2]uint64{b, e})
	}
	return out
}

// rows lists the ORC ranges the own CFI does not cover, in address order.
func (o *CFIObject) rows() []row {
	var own [][2]uint64
	if o.Own != nil {
		own = o.Own.Ranges()
	}
	var rs []row
	for _, tr := range o.Tables {
		t := tr.Table
		if t == nil {
			continue
		}
		n := len(t.ips)
		for i := 0; i < n; i++ {
			if i+1 < n && t.ips[i+1] == t.ips[i] {
				continue // duplicates: Find picks among them at the last one
			}
			start, end := t.ips[i], tr.End
			if i+1 < n {
				end = min(t.ips[i+1], tr.End)
			}
			start = max(start, tr.Start)
			if start >= end {
				continue
			}
			// As Find: on duplicate addresses a real entry wins over a
			// terminator.
			k := i
			for k > 0 && t.ips[k-1] == t.ips[k] && t.entries[k].Type == typeUndefined {
				k--
			}
			rs = appendUncovered(rs, own, row{start: start, end: end, e: t.entries[k]})
		}
	}
	sort.SliceStable(rs, func(a, b int) bool { return rs[a].start < rs[b].start })
	// Tables should not overlap; if two do, the first one wins as in
	// Unwinder.find.
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r.start < out[n-1].end {
			if r.end <= out[n-1].end {
				continue
			}
			r.start = out[n-1].end
		}
		out = append(out, r)
	}
	return o.carveExtra(out)
}

// carveExtra puts each extra rule in place of the row that covers its
// address (splitting it), or between rows where none does.
func (o *CFIObject) carveExtra(rs []row) []row {
	extra := append([]ExtraRule(nil), o.Extra...)
	sort.Slice(extra, func(a, b int) bool { return extra[a].PC < extra[b].PC })
	for i, x := range extra {
		if (i > 0 && extra[i-1].PC == x.PC) || x.PC == math.MaxUint64 {
			continue
		}
		if o.Own != nil && o.Own.covers(x.PC) {
			continue
		}
		j := sort.Search(len(rs), func(j int) bool { return rs[j].end > x.PC })
		add := row{start: x.PC, end: x.PC + 1, e: x.Entry}
		switch {
		case j < len(rs) && rs[j].start <= x.PC:
			r := rs[j]
			var parts []row
			if r.start < x.PC {
				before := r
				before.end = x.PC
				parts = append(parts, before)
			}
			parts = append(parts, add)
			if x.PC+1 < r.end {
				after := r
				after.start = x.PC + 1
				parts = append(parts, after)
			}
			rs = append(rs[:j], append(parts, rs[j+1:]...)...)
		default:
			rs = append(rs[:j], append([]row{add}, rs[j:]...)...)
		}
	}
	return rs
}

// appendUncovered appends the parts of r outside the sorted ranges own.
func appendUncovered(rs []row, own [][2]uint64, r row) []row {
	i := sort.Search(len(own), func(i int) bool { return own[i][1] > r.start })
	for ; i < len(own) && own[i][0] < r.end; i++ {
		if own[i][0] > r.start {
			p := r
			p.end = own[i][0]
			rs = append(rs, p)
		}
		r.start = own[i][1]
		if r.start >= r.end {
			return rs
		}
	}
	return append(rs, r)
}

// BuildCFIObject writes a minimal ELF64 x86-64 object whose .debug_frame
// describes, at run-time addresses, what o's ORC tables cover and o.Own
// does not, plus the user half of the address space. The bytes depend only
// on o. Its FDEs use two CIEs: one for call frames and one with the "S"
// augmentation for exception frames, whose caller's pc is exact (gdb then
// neither decrements it to look it up nor checks that the caller's stack
// is above this frame's, which a switch from an interrupt stack breaks).
func BuildCFIObject(o CFIObject) ([]byte, error) {
	o.ruleCache = nil
	limit := o.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxCFIObject
	}
	rs := o.rows()
	if o.UserEnd > o.UserStart {
		rs = append([]row{{start: o.UserStart, end: o.UserEnd, user: true}}, rs...)
	}
	var frame bytes.Buffer
	cies := [2]uint32{}
	for i, aug := range []string{"", cieSignalAug} {
		cies[i] = uint32(frame.Len())
		writeCIE(&frame, aug)
	}
	for i := 0; i < len(rs); {
		// One FDE per run of adjacent rows of one CIE.
		j := i + 1
		// Rows advance by at most 4 GiB (DW_CFA_advance_loc4): a longer
		// run, which only a corrupt table could make, gets a new FDE.
		for j < len(rs) && rs[j].start == rs[j-1].end && rs[j].signal() == rs[i].signal() && !rs[j].user && !rs[i].user && rs[j].start-rs[i].start <= math.MaxUint32 {
			j++
		}
		cie := cies[0]
		if rs[i].signal() {
			cie = cies[1]
		}
		if err := o.writeFDE(&frame, cie, rs[i:j], limit); err != nil {
			return nil, err
		}
		i = j
	}
	text := uint64(0)
	if len(rs) > 0 {
		text = rs[0].start
	}
	return writeELF(frame.Bytes(), text, limit)
}

func uleb(b *bytes.Buffer, v uint64) {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b.WriteByte(c)
		if v == 0 {
			return
		}
	}
}

func sleb(b *bytes.Buffer, v int64) {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		done := (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0)
		if !done {
			c |= 0x80
		}
		b.WriteByte(c)
		if done {
			return
		}
	}
}

// pad8 fills an entry to a multiple of 8 bytes with DW_CFA_nop (0).
func pad8(b *bytes.Buffer, entryStart int) {
	for (b.Len()-entryStart)%8 != 0 {
		b.WriteByte(0)
	}
}

// writeCIE writes a version 1 CIE (32-bit DWARF): code alignment 1, data
// alignment -8, return address in column 16 (rip), no initial rules:
// every FDE row states its own.
func writeCIE(b *bytes.Buffer, aug string) {
	start := b.Len()
	b.Write([]byte{0, 0, 0, 0})             // length, patched
	b.Write([]byte{0xff, 0xff, 0xff, 0xff}) // CIE id
	b.WriteByte(1)
	b.WriteString(aug)
	b.WriteByte(0)
	uleb(b, 1)
	sleb(b, dataAlign)
	b.WriteByte(byte(dwarfCol(amd64.RIP)))
	pad8(b, start)
	binary.LittleEndian.PutUint32(b.Bytes()[start:], uint32(b.Len()-start-4))
}

// writeFDE writes one FDE for adjacent rows of one CIE, failing as soon
// as the section passes limit bytes.
func (o *CFIObject) writeFDE(b *bytes.Buffer, cie uint32, rs []row, limit int) error {
	start := b.Len()
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[4:], cie)
	binary.LittleEndian.PutUint64(hdr[8:], rs[0].start)
	binary.LittleEndian.PutUint64(hdr[16:], rs[len(rs)-1].end-rs[0].start)
	b.Write(hdr[:])
	prev := map[int]string{}
	loc := rs[0].start
	for _, r := range rs {
		cur, err := o.cachedRules(r)
		if err != nil {
			return err
		}
		var ins bytes.Buffer
		for _, c := range ruleCols {
			rule, has := cur[c]
			old, had := prev[c]
			switch {
			case has && rule != old:
				ins.WriteString(rule)
			case !has && had:
				// A rule of an earlier row no longer applies: the
				// register keeps its value, as in any call frame.
				ins.WriteByte(cfaSameValue)
				uleb(&ins, uint64(c))
			}
		}
		if ins.Len() > 0 { // a row like the one before needs no advance
			advance(b, r.start-loc)
			loc = r.start
			b.Write(ins.Bytes())
		}
		if b.Len() > limit {
			return fmt.Errorf("%w: over %d bytes at the ORC entry for 0x%x", ErrCFIObjectTooLarge, limit, r.start)
		}
		prev = cur
	}
	pad8(b, start)
	binary.LittleEndian.PutUint32(b.Bytes()[start:], uint32(b.Len()-start-4))
	return nil
}

// advance moves the row address on by d bytes (code alignment 1).
func advance(b *bytes.Buffer, d uint64) {
	switch {
	case d == 0:
	case d < 0x40:
		b.WriteByte(cfaAdvanceLoc | byte(d))
	case d <= 0xff:
		b.Write([]byte{cfaAdvanceLoc1, byte(d)})
	case d <= 0xffff:
		b.Write([]byte{cfaAdvanceLoc2, byte(d), byte(d >> 8)})
	default:
		// Rows never span 4 GiB: a table range is one kernel or module
		// text, and the user range is its own FDE with one row.
		var w [5]byte
		w[0] = cfaAdvanceLoc4
		binary.LittleEndian.PutUint32(w[1:], uint32(d))
		b.Write(w[:])
	}
}

// spExpr pushes the value ORC calls the previous sp (the project's step
// computes it as cfa) for entry e, or reports that it has none.
func spExpr(b *bytes.Buffer, e Entry) bool {
	breg := func(r amd64.Reg, off int64) {
		b.WriteByte(opBreg0 + byte(r))
		sleb(b, off)
	}
	off := int64(e.SPOffset)
	switch e.SPReg {
	case regSP:
		breg(amd64.RSP, off)
	case regBP:
		breg(amd64.RBP, off)
	case regSPIndirect:
		breg(amd64.RSP, 0)
		b.WriteByte(opDeref)
		addConst(b, off)
	case regBPIndirect:
		breg(amd64.RBP, off)
		b.WriteByte(opDeref)
	case regR10:
		breg(amd64.R10, 0)
	case regR13:
		breg(amd64.R13, 0)
	case regDI:
		breg(amd64.RDI, 0)
	case regDX:
		breg(amd64.RDX, 0)
	case regAX:
		breg(amd64.RAX, 0)
	default:
		return false
	}
	return true
}

func addConst(b *bytes.Buffer, v int64) {
	switch {
	case v > 0:
		b.WriteByte(opPlusUconst)
		uleb(b, uint64(v))
	case v < 0:
		b.WriteByte(opConsts)
		sleb(b, v)
		b.WriteByte(opPlus)
	}
}

// exprRule is DW_CFA_expression (col) or DW_CFA_def_cfa_expression
// (colCFA) of an expression. A register's expression starts by dropping
// the CFA the consumer pushes first.
func exprRule(col int, expr []byte) string {
	var b bytes.Buffer
	if col == colCFA {
		b.WriteByte(cfaDefCFAExpr)
	} else {
		b.WriteByte(cfaExpression)
		uleb(&b, uint64(col))
		expr = append([]byte{opDrop}, expr...)
	}
	uleb(&b, uint64(len(expr)))
	b.Write(expr)
	return b.String()
}

// cachedRules is rules, computed once per distinct entry: a kernel's
// hundreds of thousands of entries take a few hundred distinct values.
func (o *CFIObject) cachedRules(r row) (map[int]string, error) {
	key := r.e
	if r.user {
		key = Entry{Type: typeEndOfStack}
	}
	if m, ok := o.ruleCache[key]; ok {
		return m, nil
	}
	m, err := o.rules(r)
	if err != nil {
		return nil, err
	}
	if o.ruleCache == nil {
		o.ruleCache = map[Entry]map[int]string{}
	}
	o.ruleCache[key] = m
	return m, nil
}

// rules returns the instructions that set each column for a row.
func (o *CFIObject) rules(r row) (map[int]string, error) {
	rules := map[int]string{}
	outermost := func() map[int]string {
		// Any CFA (gdb wants one for the frame's id), and no caller.
		var b bytes.Buffer
		b.WriteByte(cfaDefCFA)
		uleb(&b, uint64(amd64.RSP))
		uleb(&b, 8)
		rules[colCFA] = b.String()
		rules[dwarfCol(amd64.RIP)] = string([]byte{cfaUndefined, byte(dwarfCol(amd64.RIP))})
		return rules
	}
	e := r.e
	if r.user || e.Type == typeEndOfStack || e.Type == typeUndefined {
		return outermost(), nil
	}
	var sp bytes.Buffer
	if !spExpr(&sp, e) {
		return outermost(), nil
	}
	at := func(off int64) []byte { // sp expression + off
		var b bytes.Buffer
		b.Write(sp.Bytes())
		addConst(&b, off)
		return b.Bytes()
	}
	switch e.Type {
	case typeCall:
		var b bytes.Buffer
		if (e.SPReg == regSP || e.SPReg == regBP) && e.SPOffset >= 0 {
			b.WriteByte(cfaDefCFA)
			uleb(&b, uint64(map[orcReg]amd64.Reg{regSP: amd64.RSP, regBP: amd64.RBP}[e.SPReg]))
			uleb(&b, uint64(e.SPOffset))
			rules[colCFA] = b.String()
		} else {
			rules[colCFA] = exprRule(colCFA, sp.Bytes())
		}
		b.Reset()
		b.WriteByte(cfaOffsetExtSF) // return address at CFA-8
		uleb(&b, uint64(dwarfCol(amd64.RIP)))
		sleb(&b, 1)
		rules[dwarfCol(amd64.RIP)] = b.String()
	case typeRegs, typeRegsPartial:
		regs, base := fullRegs, int64(0)
		if e.Type == typeRegsPartial {
			// sp+sp_offset is the IRET frame, pt_regs' ip member.
			ip, ok := o.PtRegs.Offset(amd64.RIP)
			if !ok {
				return nil, fmt.Errorf("ORC entry at 0x%x: pt_regs layout lacks ip", r.start)
			}
			regs, base = iretRegs, -int64(ip)
		}
		spOff, ok := o.PtRegs.Offset(amd64.RSP)
		if !ok {
			return nil, fmt.Errorf("ORC entry at 0x%x: pt_regs layout lacks sp", r.start)
		}
		rules[colCFA] = exprRule(colCFA, append(at(base+int64(spOff)), opDeref))
		for _, reg := range regs {
			off, ok := o.PtRegs.Offset(reg)
			if !ok {
				return nil, fmt.Errorf("ORC entry at 0x%x: pt_regs layout lacks %v", r.start, reg)
			}
			rules[dwarfCol(reg)] = exprRule(dwarfCol(reg), at(base+int64(off)))
		}
	}
	if e.Type == typeCall {
		// rbp of the caller (a pt_regs frame restores it with the rest).
		switch e.BPReg {
		case regPrevSP:
			var b bytes.Buffer
			if e.BPOffset%8 == 0 {
				b.WriteByte(cfaOffsetExtSF)
				uleb(&b, uint64(amd64.RBP))
				sleb(&b, int64(e.BPOffset)/dataAlign)
				rules[int(amd64.RBP)] = b.String()
			} else {
				rules[int(amd64.RBP)] = exprRule(int(amd64.RBP), at(int64(e.BPOffset)))
			}
		case regBP:
			var b bytes.Buffer
			b.WriteByte(opBreg0 + byte(amd64.RBP))
			sleb(&b, int64(e.BPOffset))
			rules[int(amd64.RBP)] = exprRule(int(amd64.RBP), b.Bytes())
		}
	}
	return rules, nil
}

// writeELF wraps a .debug_frame in an ELF64 executable. Its one allocated
// section is an empty .text at textAddr: a debugger that loads the object
// as a library relocates it by that section (gdb's qXfer:libraries wants
// at least one), and being empty it covers no address, where a section
// over the kernel's text would take symbol lookups from the vmlinux.
func writeELF(debugFrame []byte, textAddr uint64, limit int) ([]byte, error) {
	shstr := []byte("\x00.text\x00.debug_frame\x00.shstrtab\x00")
	const nameText, nameFrame, nameShstr = 1, 7, 20
	const sections = 4
	frameOff := uint64(elfHeaderSize)
	shstrOff := frameOff + uint64(len(debugFrame))
	shOff := (shstrOff + uint64(len(shstr)) + 7) &^ 7
	total := shOff + sections*elfSectionHdrSize
	if total > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, bound %d", ErrCFIObjectTooLarge, total, limit)
	}
	out := make([]byte, total)
	le := binary.LittleEndian
	copy(out, []byte{0x7f, 'E', 'L', 'F', 2 /*64-bit*/, 1 /*LE*/, 1 /*version*/})
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[40:], shOff)
	le.PutUint16(out[52:], elfHeaderSize)
	le.PutUint16(out[58:], elfSectionHdrSize)
	le.PutUint16(out[60:], sections)
	le.PutUint16(out[62:], sections-1) // .shstrtab's index
	copy(out[frameOff:], debugFrame)
	copy(out[shstrOff:], shstr)
	sh := func(i int, name uint32, typ elf.SectionType, flags elf.SectionFlag, addr, off, size, align uint64) {
		h := out[shOff+uint64(i)*elfSectionHdrSize:]
		le.PutUint32(h[0:], name)
		le.PutUint32(h[4:], uint32(typ))
		le.PutUint64(h[8:], uint64(flags))
		le.PutUint64(h[16:], addr)
		le.PutUint64(h[24:], off)
		le.PutUint64(h[32:], size)
		le.PutUint64(h[48:], align)
	}
	sh(1, nameText, elf.SHT_NOBITS, elf.SHF_ALLOC|elf.SHF_EXECINSTR, textAddr, frameOff, 0, 1)
	sh(2, nameFrame, elf.SHT_PROGBITS, 0, 0, frameOff, uint64(len(debugFrame)), 8)
	sh(3, nameShstr, elf.SHT_STRTAB, 0, 0, shstrOff, uint64(len(shstr)), 1)
	return out, nil
}

// CFIObjectText returns the address of an object's empty .text, the one
// section a debugger relocates (to where it already is).
func CFIObjectText(obj []byte) (uint64, error) {
	ef, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return 0, err
	}
	s := ef.Section(".text")
	if s == nil {
		return 0, fmt.Errorf("unwind object without .text")
	}
	return s.Addr, nil
}
