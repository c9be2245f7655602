package symbols

import (
	"bytes"
	"debug/dwarf"
	"errors"
	"fmt"
)

// The name index is built by this scanner, not by debug/dwarf: debug/dwarf
// decodes every attribute of every DIE into an allocated Entry, which on a
// kernel's 160+ MB of .debug_info costs seconds and hundreds of MB. The
// scanner visits only the top-level DIEs of each unit (and the children of
// enums), decodes only DW_AT_name, DW_AT_declaration, DW_AT_sibling and
// DW_AT_const_value, and steps over every other attribute by its form's
// size. It allocates per abbreviation table and per new name, never per
// DIE.

// ErrMalformedDWARF is wrapped by every error for DWARF that cannot be
// read as the standard says.
var ErrMalformedDWARF = errors.New("malformed DWARF")

// DWARFError says where in which section of which file the DWARF is bad.
type DWARFError struct {
	File    string
	Section string
	Offset  uint64
	Msg     string
}

func (e *DWARFError) Error() string {
	return fmt.Sprintf("%s: %s at 0x%x: %v: %s", e.File, e.Section, e.Offset, ErrMalformedDWARF, e.Msg)
}

func (e *DWARFError) Unwrap() error { return ErrMalformedDWARF }

// Form codes (DWARF 5 section 7.5.6, and the GNU extensions gcc emits).
const (
	dwFormAddr          = 0x01
	dwFormBlock2        = 0x03
	dwFormBlock4        = 0x04
	dwFormData2         = 0x05
	dwFormData4         = 0x06
	dwFormData8         = 0x07
	dwFormString        = 0x08
	dwFormBlock         = 0x09
	dwFormBlock1        = 0x0a
	dwFormData1         = 0x0b
	dwFormFlag          = 0x0c
	dwFormSdata         = 0x0d
	dwFormStrp          = 0x0e
	dwFormUdata         = 0x0f
	dwFormRefAddr       = 0x10
	dwFormRef1          = 0x11
	dwFormRef2          = 0x12
	dwFormRef4          = 0x13
	dwFormRef8          = 0x14
	dwFormRefUdata      = 0x15
	dwFormIndirect      = 0x16
	dwFormSecOffset     = 0x17
	dwFormExprloc       = 0x18
	dwFormFlagPresent   = 0x19
	dwFormStrx          = 0x1a
	dwFormAddrx         = 0x1b
	dwFormRefSup4       = 0x1c
	dwFormStrpSup       = 0x1d
	dwFormData16        = 0x1e
	dwFormLineStrp      = 0x1f
	dwFormRefSig8       = 0x20
	dwFormImplicitConst = 0x21
	dwFormLoclistx      = 0x22
	dwFormRnglistx      = 0x23
	dwFormRefSup8       = 0x24
	dwFormStrx1         = 0x25
	dwFormStrx2         = 0x26
	dwFormStrx3         = 0x27
	dwFormStrx4         = 0x28
	dwFormAddrx1        = 0x29
	dwFormAddrx2        = 0x2a
	dwFormAddrx3        = 0x2b
	dwFormAddrx4        = 0x2c
	dwFormGnuAddrIndex  = 0x1f01
	dwFormGnuStrIndex   = 0x1f02
	dwFormGnuRefAlt     = 0x1f20
	dwFormGnuStrpAlt    = 0x1f21
)

// unitFormat is what a form's size depends on besides the form.
type unitFormat struct {
	addrSize, offSize uint8
	version           uint16
}

// formSize is the fixed size of a form's value in a unit of format f, or
// -1 for a variable-size form, -2 for an unknown one.
func (f unitFormat) formSize(form uint32) int {
	switch form {
	case dwFormAddr:
		return int(f.addrSize)
	case dwFormData1, dwFormRef1, dwFormFlag, dwFormStrx1, dwFormAddrx1:
		return 1
	case dwFormData2, dwFormRef2, dwFormStrx2, dwFormAddrx2:
		return 2
	case dwFormStrx3, dwFormAddrx3:
		return 3
	case dwFormData4, dwFormRef4, dwFormStrx4, dwFormAddrx4, dwFormRefSup4:
		return 4
	case dwFormData8, dwFormRef8, dwFormRefSig8, dwFormRefSup8:
		return 8
	case dwFormData16:
		return 16
	case dwFormStrp, dwFormLineStrp, dwFormSecOffset, dwFormStrpSup, dwFormGnuRefAlt, dwFormGnuStrpAlt:
		return int(f.offSize)
	case dwFormRefAddr:
		if f.version <= 2 { // DWARF 2 made it address-sized
			return int(f.addrSize)
		}
		return int(f.offSize)
	case dwFormFlagPresent, dwFormImplicitConst:
		return 0
	case dwFormSdata, dwFormUdata, dwFormRefUdata, dwFormStrx, dwFormAddrx, dwFormLoclistx, dwFormRnglistx,
		dwFormGnuAddrIndex, dwFormGnuStrIndex, dwFormString, dwFormBlock, dwFormBlock1, dwFormBlock2, dwFormBlock4,
		dwFormExprloc, dwFormIndirect:
		return -1
	}
	return -2
}

type abbrevAttr struct {
	attr     dwarf.Attr
	form     uint32
	implicit int64 // DW_FORM_implicit_const's value, kept in the abbreviation
}

type abbrev struct {
	tag      dwarf.Tag
	children bool
	named    bool // a tag the index records, whose name is decoded
	attrs    []abbrevAttr
	// fixed is the size of all attribute values when every form has a
	// fixed size (-1 otherwise): such a DIE (most are) is stepped over in
	// one addition, reading only the attributes in at, at offsets known
	// from the abbreviation.
	fixed int
	at    [nFixedAttrs]fixedAttr
}

// The attributes the scanner reads, as indexes of abbrev.at.
const (
	atSibling = iota
	atName
	atDecl
	atConst
	nFixedAttrs
)

type fixedAttr struct {
	pos      int // of the value from the DIE's first attribute; -1: absent
	form     uint32
	implicit int64
}

// abbrevTable is one parsed abbreviation table. Its slices are reused
// for the next table: a kernel has one table per unit, and keeping
// thousands of them would cost more than parsing each once.
type abbrevTable struct {
	key     abbrevKey
	refAddr bool // some attribute has DW_FORM_ref_addr or DW_FORM_GNU_ref_alt
	list    []abbrev
	attrs   []abbrevAttr // every abbreviation's attributes, in order
	dense   []int32      // by code: index in list + 1 (gcc numbers codes 1..n)
	sparse  map[uint64]int32
}

func (t *abbrevTable) get(code uint64) *abbrev {
	if t.sparse == nil {
		if code < uint64(len(t.dense)) && t.dense[code] > 0 {
			return &t.list[t.dense[code]-1]
		}
		return nil
	}
	if i, ok := t.sparse[code]; ok {
		return &t.list[i-1]
	}
	return nil
}

// dwarfScanner reads one file's .debug_info for the name index.
type dwarfScanner struct {
	file       string
	info       []byte
	abbrevSec  []byte
	str        []byte
	lineStr    []byte
	strOffsets []byte
	cur        *abbrevTable // the last table parsed
	units      []unitSpan   // every unit, in order, once the index is built
	seenBits   []uint64     // while the index is built: see seen
}

type abbrevKey struct {
	off uint64
	f   unitFormat
}

func (s *dwarfScanner) errAt(sec string, off uint64, format string, args ...any) error {
	return &DWARFError{File: s.file, Section: sec, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// cursor reads a section with every read checked; the first failure
// sticks in bad, so a sequence of reads is checked once at its end.
type cursor struct {
	b   []byte
	pos int
	bad bool
}

func (c *cursor) u8() uint8 {
	if c.pos >= len(c.b) {
		c.bad = true
		return 0
	}
	v := c.b[c.pos]
	c.pos++
	return v
}

func (c *cursor) fixed(n int) uint64 {
	if n < 0 || n > len(c.b)-c.pos {
		c.bad = true
		c.pos = len(c.b)
		return 0
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(c.b[c.pos+i])
	}
	c.pos += n
	return v
}

func (c *cursor) skip(n uint64) {
	if n > uint64(len(c.b)-c.pos) {
		c.bad = true
		c.pos = len(c.b)
		return
	}
	c.pos += int(n)
}

func (c *cursor) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if c.pos >= len(c.b) || shift > 63 {
			c.bad = true
			return 0
		}
		b := c.b[c.pos]
		c.pos++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v
		}
	}
}

func (c *cursor) sleb() int64 {
	var v int64
	for shift := uint(0); ; shift += 7 {
		if c.pos >= len(c.b) || shift > 63 {
			c.bad = true
			return 0
		}
		b := c.b[c.pos]
		c.pos++
		v |= int64(b&0x7f) << shift
		if b < 0x80 {
			if shift+7 < 64 && b&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v
		}
	}
}

// table parses the abbreviation table at off for units of format f,
// unless it is the one parsed last.
func (s *dwarfScanner) table(off uint64, f unitFormat) (*abbrevTable, error) {
	key := abbrevKey{off, f}
	t := s.cur
	if t == nil {
		t = &abbrevTable{}
		s.cur = t
	} else if t.key == key && t.list != nil {
		return t, nil
	}
	t.key, t.refAddr, t.list, t.attrs, t.dense, t.sparse = key, false, t.list[:0], t.attrs[:0], t.dense[:0], nil
	if off >= uint64(len(s.abbrevSec)) {
		return nil, s.errAt(".debug_abbrev", off, "abbreviation table offset past the end (%d bytes)", len(s.abbrevSec))
	}
	c := cursor{b: s.abbrevSec, pos: int(off)}
	type span struct{ lo, hi int }
	var codes []uint64
	var spans []span
	var maxCode uint64
	for {
		at := uint64(c.pos)
		code := c.uleb()
		if c.bad {
			return nil, s.errAt(".debug_abbrev", at, "table runs past the end")
		}
		if code == 0 {
			break
		}
		a := abbrev{tag: dwarf.Tag(c.uleb()), children: c.u8() != 0}
		for i := range a.at {
			a.at[i].pos = -1
		}
		switch a.tag {
		case dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagTypedef, dwarf.TagEnumerationType:
			a.named = true
		}
		lo := len(t.attrs)
		// Each attribute takes at least two bytes of the section, which
		// bounds what is appended by the section's size.
		for fixed, known := 0, true; ; {
			attr, form := c.uleb(), c.uleb()
			if c.bad {
				return nil, s.errAt(".debug_abbrev", at, "abbreviation %d runs past the end", code)
			}
			if attr == 0 && form == 0 {
				a.fixed = -1
				if known {
					a.fixed = fixed
				}
				break
			}
			if attr > 0xffff || form > 0xffff {
				return nil, s.errAt(".debug_abbrev", at, "abbreviation %d: attribute 0x%x form 0x%x out of range", code, attr, form)
			}
			aa := abbrevAttr{attr: dwarf.Attr(attr), form: uint32(form)}
			if form == dwFormImplicitConst {
				aa.implicit = c.sleb()
			}
			size := f.formSize(aa.form)
			if size == -2 {
				return nil, s.errAt(".debug_abbrev", at, "abbreviation %d: unknown form 0x%x", code, form)
			}
			if aa.form == dwFormRefAddr || aa.form == dwFormGnuRefAlt || aa.form == dwFormIndirect {
				t.refAddr = true
			}
			k := -1
			switch aa.attr {
			case dwarf.AttrSibling:
				k = atSibling
			case dwarf.AttrName:
				k = atName
			case dwarf.AttrDeclaration:
				k = atDecl
			case dwarf.AttrConstValue:
				k = atConst
			}
			if k >= 0 { // the last one counts, as in the attribute loop of next
				a.at[k] = fixedAttr{pos: fixed, form: aa.form, implicit: aa.implicit}
			}
			if size < 0 {
				known = false
			} else {
				fixed += size
			}
			t.attrs = append(t.attrs, aa)
		}
		t.list = append(t.list, a)
		codes = append(codes, code)
		spans = append(spans, span{lo, len(t.attrs)})
		maxCode = max(maxCode, code)
	}
	for i := range t.list {
		t.list[i].attrs = t.attrs[spans[i].lo:spans[i].hi:spans[i].hi]
	}
	// Dense when the codes leave few holes, so its size stays bounded by
	// the number of abbreviations read.
	if maxCode <= 2*uint64(len(t.list))+16 {
		if cap(t.dense) < int(maxCode)+1 {
			t.dense = make([]int32, maxCode+1)
		}
		t.dense = t.dense[:maxCode+1]
		clear(t.dense)
	} else {
		t.sparse = make(map[uint64]int32, len(t.list))
	}
	for i, code := range codes {
		if t.get(code) != nil {
			t.list = nil // not cached
			return nil, s.errAt(".debug_abbrev", off, "abbreviation code %d defined twice", code)
		}
		if t.sparse != nil {
			t.sparse[code] = int32(i + 1)
		} else {
			t.dense[code] = int32(i + 1)
		}
	}
	return t, nil
}

// unitSpan is where a unit is in .debug_info; refAddr says its DIEs use
// DW_FORM_ref_addr (references by file offset).
type unitSpan struct {
	start, end uint64
	refAddr    bool
}

// unit is what the scan needs of one unit header.
type scanUnit struct {
	start, end, firstDIE uint64
	f                    unitFormat
	abbrevOff            uint64
	strOffsetsBase       uint64
}

// nextUnit parses the unit header at off.
func (s *dwarfScanner) nextUnit(off uint64) (scanUnit, error) {
	u := scanUnit{start: off}
	c := cursor{b: s.info, pos: int(off)}
	n := c.fixed(4)
	u.f.offSize = 4
	if n == 0xffffffff {
		n = c.fixed(8)
		u.f.offSize = 8
	} else if n >= 0xfffffff0 {
		return u, s.errAt(".debug_info", off, "reserved unit length 0x%x", n)
	}
	if c.bad || n > uint64(len(s.info)-c.pos) {
		return u, s.errAt(".debug_info", off, "unit length %d runs past the end of the section (%d bytes)", n, len(s.info))
	}
	u.end = uint64(c.pos) + n
	c.b = s.info[:u.end] // the header must fit in the unit
	u.f.version = uint16(c.fixed(2))
	switch {
	case u.f.version == 5:
		ut := c.u8()
		u.f.addrSize = c.u8()
		u.abbrevOff = c.fixed(int(u.f.offSize))
		switch ut {
		case 2, 6: // DW_UT_type, DW_UT_split_type: signature, type offset
			c.skip(8 + uint64(u.f.offSize))
		case 4, 5: // DW_UT_skeleton, DW_UT_split_compile: unit id
			c.skip(8)
		}
	case u.f.version >= 2 && u.f.version <= 4:
		u.abbrevOff = c.fixed(int(u.f.offSize))
		u.f.addrSize = c.u8()
	default:
		return u, s.errAt(".debug_info", off, "unit version %d (2 to 5 are known)", u.f.version)
	}
	if c.bad {
		return u, s.errAt(".debug_info", off, "unit header runs past the unit's end")
	}
	switch u.f.addrSize {
	case 1, 2, 4, 8:
	default:
		return u, s.errAt(".debug_info", off, "address size %d", u.f.addrSize)
	}
	u.firstDIE = uint64(c.pos)
	return u, nil
}

// die is the little the index needs of one DIE.
type die struct {
	off  uint64
	a    *abbrev
	name []byte // nil when absent or not a string
	// A name in a string section is read only when needed (loadName):
	// most are seen before, which strOff (offset in .debug_str + 1, 0 for
	// a name elsewhere) tells without reading them.
	nameSec     []byte
	nameSecName string
	nameOff     uint64
	lazyName    bool
	strOff      uint64
	decl        bool
	sibling     uint64 // 0 when absent
	value       int64
	hasValue    bool
}

// dieReader reads the DIEs of one unit.
type dieReader struct {
	s   *dwarfScanner
	u   *scanUnit
	t   *abbrevTable
	c   cursor // over the unit's bytes only
	err error
}

func (r *dieReader) fail(off uint64, format string, args ...any) bool {
	if r.err == nil {
		r.err = r.s.errAt(".debug_info", off, format, args...)
	}
	return false
}

// How much of a DIE next decodes.
const (
	dieSkip  = iota // only what finds its end and its sibling
	dieNamed        // everything the index reads, for the tags it records
	dieAll          // everything the index reads, whatever the tag
)

// next reads the DIE at the cursor: its name, declaration and constant
// value as mode says, and always its sibling. It returns false at a null
// entry (d.a == nil) or an error (r.err).
func (r *dieReader) next(d *die, mode int) bool {
	*d = die{off: uint64(r.c.pos)}
	code := r.c.uleb()
	if r.c.bad {
		return r.fail(d.off, "DIE runs past the end of its unit")
	}
	if code == 0 {
		return false
	}
	a := r.t.get(code)
	if a == nil {
		return r.fail(d.off, "abbreviation code %d is not in the table at .debug_abbrev 0x%x", code, r.u.abbrevOff)
	}
	d.a = a
	full := mode == dieAll || mode == dieNamed && a.named
	if a.fixed >= 0 {
		start := r.c.pos
		if a.fixed > len(r.c.b)-start {
			return r.fail(d.off, "DIE runs past the end of its unit")
		}
		if f := a.at[atSibling]; f.pos >= 0 {
			r.c.pos = start + f.pos
			d.sibling = r.ref(f.form)
		}
		if full {
			if f := a.at[atName]; f.pos >= 0 {
				r.c.pos = start + f.pos
				if !r.name(d, f.form) {
					return false
				}
			}
			if f := a.at[atDecl]; f.pos >= 0 {
				r.c.pos = start + f.pos
				r.decl(d, f.form)
			}
			if f := a.at[atConst]; f.pos >= 0 {
				r.c.pos = start + f.pos
				r.constant(d, f.form, f.implicit)
			}
		}
		r.c.pos = start + a.fixed
		if r.c.bad {
			return r.fail(d.off, "DIE runs past the end of its unit")
		}
		return true
	}
	for _, at := range a.attrs {
		form := at.form
		if form == dwFormIndirect {
			form = uint32(r.c.uleb())
			if form == dwFormIndirect || form == dwFormImplicitConst {
				return r.fail(d.off, "DW_FORM_indirect names form 0x%x", form)
			}
		}
		switch {
		case at.attr == dwarf.AttrSibling:
			d.sibling = r.ref(form)
			continue
		case !full:
		case at.attr == dwarf.AttrName:
			if !r.name(d, form) {
				return false
			}
			continue
		case at.attr == dwarf.AttrDeclaration:
			if r.decl(d, form) {
				continue
			}
		case at.attr == dwarf.AttrConstValue:
			if r.constant(d, form, at.implicit) {
				continue
			}
		}
		if !r.skipForm(d.off, form) {
			return false
		}
	}
	if r.c.bad {
		return r.fail(d.off, "DIE runs past the end of its unit")
	}
	return true
}

// decl reads a DW_AT_declaration flag (false: not a flag form, the caller
// skips it; debug/dwarf's Val(AttrDeclaration).(bool) is false then).
func (r *dieReader) decl(d *die, form uint32) bool {
	switch form {
	case dwFormFlag:
		d.decl = r.c.u8() != 0
	case dwFormFlagPresent:
		d.decl = true
	default:
		return false
	}
	return true
}

// ref reads a reference as an offset in .debug_info (0 for a form that
// is not a reference into this section).
func (r *dieReader) ref(form uint32) uint64 {
	var v uint64
	switch form {
	case dwFormRef1, dwFormRef2, dwFormRef4, dwFormRef8:
		v = r.c.fixed(r.u.f.formSize(form)) + r.u.start
	case dwFormRefUdata:
		v = r.c.uleb() + r.u.start
	case dwFormRefAddr:
		return r.c.fixed(r.u.f.formSize(form))
	default:
		r.skipForm(uint64(r.c.pos), form)
		return 0
	}
	if v < r.u.start { // wrapped
		return 0
	}
	return v
}

// constant reads a DW_AT_const_value the way debug/dwarf does: dataN
// zero-extended, sdata signed, udata as its bits. Other forms are not
// constants here (false: the caller skips them).
func (r *dieReader) constant(d *die, form uint32, implicit int64) bool {
	switch form {
	case dwFormData1, dwFormData2, dwFormData4, dwFormData8:
		d.value = int64(r.c.fixed(r.u.f.formSize(form)))
	case dwFormSdata:
		d.value = r.c.sleb()
	case dwFormUdata:
		d.value = int64(r.c.uleb())
	case dwFormImplicitConst:
		d.value = implicit
	default:
		return false
	}
	d.hasValue = true
	return true
}

// name reads a string-valued DW_AT_name; other forms are skipped, and
// the DIE counts as unnamed, as debug/dwarf's Val(AttrName).(string) does.
func (r *dieReader) name(d *die, form uint32) bool {
	var sec []byte
	var secName string
	var off uint64
	switch form {
	case dwFormString:
		i := bytes.IndexByte(r.c.b[r.c.pos:], 0)
		if i < 0 {
			return r.fail(d.off, "DW_AT_name string runs past the end of its unit")
		}
		d.name = r.c.b[r.c.pos : r.c.pos+i]
		r.c.pos += i + 1
		return true
	case dwFormStrp, dwFormLineStrp:
		off = r.c.fixed(int(r.u.f.offSize))
		sec, secName = r.s.str, ".debug_str"
		if form == dwFormLineStrp {
			sec, secName = r.s.lineStr, ".debug_line_str"
		}
	case dwFormStrx, dwFormStrx1, dwFormStrx2, dwFormStrx3, dwFormStrx4:
		var idx uint64
		if form == dwFormStrx {
			idx = r.c.uleb()
		} else {
			idx = r.c.fixed(r.u.f.formSize(form))
		}
		w := uint64(r.u.f.offSize)
		at := r.u.strOffsetsBase + idx*w
		if idx > uint64(len(r.s.strOffsets))/w || at < r.u.strOffsetsBase || at > uint64(len(r.s.strOffsets)) || uint64(len(r.s.strOffsets))-at < w {
			return r.fail(d.off, "DW_FORM_strx index %d outside .debug_str_offsets (%d bytes, base 0x%x)", idx, len(r.s.strOffsets), r.u.strOffsetsBase)
		}
		oc := cursor{b: r.s.strOffsets, pos: int(at)}
		off = oc.fixed(int(w))
		sec, secName = r.s.str, ".debug_str"
	default:
		return r.skipForm(d.off, form)
	}
	if r.c.bad {
		return r.fail(d.off, "DIE runs past the end of its unit")
	}
	if off >= uint64(len(sec)) {
		return r.fail(d.off, "DW_AT_name at %s 0x%x: past the end (%d bytes)", secName, off, len(sec))
	}
	d.nameSec, d.nameSecName, d.nameOff, d.lazyName = sec, secName, off, true
	if secName == ".debug_str" {
		d.strOff = off + 1
	}
	return true
}

// loadName reads the name name() located.
func (r *dieReader) loadName(d *die) bool {
	if !d.lazyName {
		return true
	}
	d.lazyName = false
	i := bytes.IndexByte(d.nameSec[d.nameOff:], 0)
	if i < 0 {
		return r.fail(d.off, "DW_AT_name at %s 0x%x: no terminating NUL", d.nameSecName, d.nameOff)
	}
	d.name = d.nameSec[d.nameOff : d.nameOff+uint64(i)]
	return true
}

// skipForm steps over one value of form.
func (r *dieReader) skipForm(at uint64, form uint32) bool {
	c := &r.c
	switch n := r.u.f.formSize(form); {
	case n >= 0:
		c.skip(uint64(n))
	case form == dwFormString:
		i := bytes.IndexByte(c.b[c.pos:], 0)
		if i < 0 {
			return r.fail(at, "string runs past the end of its unit")
		}
		c.pos += i + 1
	case form == dwFormBlock1:
		c.skip(uint64(c.u8()))
	case form == dwFormBlock2:
		c.skip(c.fixed(2))
	case form == dwFormBlock4:
		c.skip(c.fixed(4))
	case form == dwFormBlock || form == dwFormExprloc:
		c.skip(c.uleb())
	case form == dwFormIndirect:
		return r.fail(at, "DW_FORM_indirect names DW_FORM_indirect")
	case n == -1: // LEB128
		c.uleb()
	default:
		return r.fail(at, "unknown form 0x%x", form)
	}
	if c.bad {
		return r.fail(at, "attribute value runs past the end of its unit")
	}
	return true
}

// skipChildren moves past the children of d: to its sibling when it has
// one, else by walking them.
func (r *dieReader) skipChildren(d *die) bool {
	if !d.a.children {
		return true
	}
	if d.sibling != 0 {
		// Only forward, inside the unit: a hostile sibling must not loop.
		if d.sibling <= uint64(r.c.pos) || d.sibling > r.u.end {
			return r.fail(d.off, "DW_AT_sibling 0x%x is not after the DIE inside its unit (0x%x..0x%x)", d.sibling, r.c.pos, r.u.end)
		}
		r.c.pos = int(d.sibling)
		return true
	}
	// Every step consumes at least one byte, so this ends.
	for depth := 1; depth > 0; {
		var c die
		if !r.next(&c, dieSkip) {
			if r.err != nil {
				return false
			}
			depth--
			continue
		}
		if c.a.children {
			if c.sibling != 0 {
				if !r.skipChildren(&c) {
					return false
				}
				continue
			}
			depth++
		}
	}
	return true
}

// dwarfNameIndex is the name index: first definitions in .debug_info
// order (see DWARFTypes).
type dwarfNameIndex struct {
	structs map[string]dwarf.Offset // struct, union
	enums   map[string]dwarf.Offset
	typedef map[string]dwarf.Offset
	values  map[string]int64 // enumerator -> value
}

// buildIndex scans every unit.
func (s *dwarfScanner) buildIndex() (*dwarfNameIndex, error) {
	ix := &dwarfNameIndex{structs: map[string]dwarf.Offset{}, enums: map[string]dwarf.Offset{}, typedef: map[string]dwarf.Offset{}, values: map[string]int64{}}
	empty := map[string]dwarf.Offset{}
	s.seenBits = make([]uint64, (uint64(len(s.str))*4+63)/64)
	defer func() { s.seenBits = nil }()
	for off := uint64(0); off < uint64(len(s.info)); {
		u, err := s.nextUnit(off)
		if err != nil {
			return nil, err
		}
		if err := s.indexUnit(&u, ix, empty); err != nil {
			return nil, err
		}
		s.units = append(s.units, unitSpan{u.start, u.end, s.cur != nil && s.cur.refAddr})
		off = u.end
	}
	for k, v := range empty {
		if _, ok := ix.structs[k]; !ok {
			ix.structs[k] = v
		}
	}
	return ix, nil
}

func (s *dwarfScanner) indexUnit(u *scanUnit, ix *dwarfNameIndex, empty map[string]dwarf.Offset) error {
	return s.topDIEs(u, dieNamed, func(r *dieReader, d *die) bool {
		kind := indexKind(d)
		if d.decl || kind >= 0 && d.strOff != 0 && s.seen(d.strOff-1, kind) {
			// A declaration, or a name this kind of entry already has.
			return r.skipChildren(d)
		}
		if !r.loadName(d) {
			return false
		}
		if kind >= 0 && d.strOff != 0 && len(d.name) > 0 {
			s.mark(d.strOff-1, kind) // recorded below if it was not already
		}
		switch d.a.tag {
		case dwarf.TagStructType, dwarf.TagUnionType:
			if len(d.name) == 0 {
				break
			}
			if d.a.children {
				if _, ok := ix.structs[string(d.name)]; !ok {
					ix.structs[string(d.name)] = dwarf.Offset(d.off)
				}
			} else if _, ok := empty[string(d.name)]; !ok {
				empty[string(d.name)] = dwarf.Offset(d.off)
			}
		case dwarf.TagTypedef:
			if _, ok := ix.typedef[string(d.name)]; !ok && len(d.name) > 0 {
				ix.typedef[string(d.name)] = dwarf.Offset(d.off)
			}
		case dwarf.TagEnumerationType:
			if !d.a.children {
				break
			}
			if len(d.name) > 0 {
				if _, seen := ix.enums[string(d.name)]; seen {
					break // the same enum from another unit
				}
				ix.enums[string(d.name)] = dwarf.Offset(d.off)
			}
			if !r.enumerators(ix) {
				return false
			}
			return true
		}
		return r.skipChildren(d)
	})
}

// indexKind says which of the index's tables a named DIE goes to: 0
// structs and unions with members, 1 without, 2 typedefs, 3 enums with
// enumerators; -1 for the rest.
func indexKind(d *die) int {
	switch d.a.tag {
	case dwarf.TagStructType, dwarf.TagUnionType:
		if d.a.children {
			return 0
		}
		return 1
	case dwarf.TagTypedef:
		return 2
	case dwarf.TagEnumerationType:
		if d.a.children {
			return 3
		}
	}
	return -1
}

// seen and mark keep, per .debug_str offset, which tables have the name
// there (a linked kernel's strings are merged: one offset per name), so a
// type repeated in every unit costs a bit test, not a map lookup.
func (s *dwarfScanner) seen(off uint64, kind int) bool {
	i := off*4 + uint64(kind)
	return i/64 < uint64(len(s.seenBits)) && s.seenBits[i/64]&(1<<(i%64)) != 0
}

func (s *dwarfScanner) mark(off uint64, kind int) {
	if i := off*4 + uint64(kind); i/64 < uint64(len(s.seenBits)) {
		s.seenBits[i/64] |= 1 << (i % 64)
	}
}

// unitStrOffsetsBase re-reads the unit DIE for DW_AT_str_offsets_base
// (DW_FORM_strx indexes from there; debug/dwarf takes 0 when absent).
func (r *dieReader) unitStrOffsetsBase(cu *die) uint64 {
	save := r.c.pos
	defer func() { r.c.pos = save }()
	r.c.pos = int(cu.off)
	r.c.uleb()
	for _, at := range cu.a.attrs {
		form := at.form
		if form == dwFormIndirect {
			form = uint32(r.c.uleb())
		}
		if at.attr == dwarf.AttrStrOffsetsBase && (form == dwFormSecOffset || form == dwFormData4 || form == dwFormData8) {
			return r.c.fixed(r.u.f.formSize(form))
		}
		if !r.skipForm(cu.off, form) {
			return 0
		}
	}
	return 0
}

// enumerators reads the children of the enum just read: each
// enumerator's first value by name goes into the index.
func (r *dieReader) enumerators(ix *dwarfNameIndex) bool {
	for {
		var c die
		if !r.next(&c, dieAll) || !r.loadName(&c) {
			return r.err == nil
		}
		if c.a.tag == dwarf.TagEnumerator && c.hasValue && len(c.name) > 0 {
			if _, dup := ix.values[string(c.name)]; !dup {
				ix.values[string(c.name)] = c.value
			}
		}
		if !r.skipChildren(&c) {
			return false
		}
	}
}

// dwarfSymbolIndex is where each function and variable name is first
// defined among the units' top-level DIEs, else first declared (a
// definition after an extern declaration in its unit, as init_task's,
// has no name of its own: DW_AT_specification), for whatis-style
// questions. The type index leaves them out, and so costs every load
// nothing for them; this second pass runs on the first such question.
type dwarfSymbolIndex struct {
	funcs, vars map[string]symbolDIE
}

type symbolDIE struct {
	off  dwarf.Offset
	decl bool
}

// buildSymbolIndex scans every unit's top-level DIEs once more.
func (s *dwarfScanner) buildSymbolIndex() (*dwarfSymbolIndex, error) {
	ix := &dwarfSymbolIndex{funcs: map[string]symbolDIE{}, vars: map[string]symbolDIE{}}
	defer func() { s.cur = nil }()
	for off := uint64(0); off < uint64(len(s.info)); {
		u, err := s.nextUnit(off)
		if err != nil {
			return nil, err
		}
		if err := s.symbolsUnit(&u, ix); err != nil {
			return nil, err
		}
		off = u.end
	}
	return ix, nil
}

func (s *dwarfScanner) symbolsUnit(u *scanUnit, ix *dwarfSymbolIndex) error {
	return s.topDIEs(u, dieAll, func(r *dieReader, d *die) bool {
		var m map[string]symbolDIE
		switch d.a.tag {
		case dwarf.TagSubprogram:
			m = ix.funcs
		case dwarf.TagVariable:
			m = ix.vars
		}
		if m != nil {
			if !r.loadName(d) {
				return false
			}
			if old, ok := m[string(d.name)]; (!ok || old.decl && !d.decl) && len(d.name) > 0 {
				m[string(d.name)] = symbolDIE{dwarf.Offset(d.off), d.decl}
			}
		}
		return r.skipChildren(d)
	})
}

// topDIEs reads a unit's compile-unit entry and calls visit for each of
// its children, the unit's top-level entries, read in mode; visit returns
// false when it stops on r.err.
func (s *dwarfScanner) topDIEs(u *scanUnit, mode int, visit func(r *dieReader, d *die) bool) error {
	t, err := s.table(u.abbrevOff, u.f)
	if err != nil {
		return err
	}
	r := dieReader{s: s, u: u, t: t, c: cursor{b: s.info[:u.end], pos: int(u.firstDIE)}}
	if r.c.pos >= len(r.c.b) {
		return nil // a unit with no DIE
	}
	var cu die
	if !r.next(&cu, dieSkip) {
		return r.err
	}
	if !cu.a.children {
		return nil
	}
	u.strOffsetsBase = r.unitStrOffsetsBase(&cu)
	if r.err != nil {
		return r.err
	}
	for r.c.pos < len(r.c.b) {
		var d die
		if !r.next(&d, mode) {
			return r.err // nil at the unit's null entry
		}
		if !visit(&r, &d) {
			return r.err
		}
	}
	return nil
}
