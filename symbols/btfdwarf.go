package symbols

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// DWARF 4 generated from BTF, for a debugger that has no vmlinux with
// debug information: one compile unit holding a DIE per BTF type (none
// deduplicated, none dropped except TYPE_TAG, which references skip, and
// the kinds that are not types: FUNC, VAR, DATASEC, DECL_TAG), then
// subprograms for the functions and variables for the variables the
// caller places at addresses. References are DW_FORM_ref4 offsets inside
// the unit, patched once every DIE is written.

// MaxDWARFBytes bounds the DWARF that BTF.DWARF generates.
const MaxDWARFBytes = 512 << 20

// maxDWARFBytes is MaxDWARFBytes, lowered by tests.
var maxDWARFBytes = MaxDWARFBytes

// ErrDWARFTooLarge is returned when the generated DWARF would pass
// MaxDWARFBytes.
var ErrDWARFTooLarge = errors.New("generated DWARF too large")

// DWARFVariable is a variable for BTF.DWARF to describe at Addr (for a
// per-CPU variable, its offset in .data..percpu). Its type is BTF type id
// TypeID or, when TypeID is 0, the type named TypeName: "struct NAME",
// "union NAME", "enum NAME", a typedef or base type name ("u64", "long
// unsigned int"), or "void", each optionally followed by one or more "*".
// Static (a kallsyms 'd' or 'b') leaves out DW_AT_external. Count > 0
// makes it an array of Count elements of that type.
type DWARFVariable struct {
	Name     string
	Addr     uint64
	TypeID   uint32
	TypeName string
	Static   bool
	Count    uint64
	// File, if set, is the source file that defines the variable (a
	// file-static one): it goes into a compilation unit of that name, so
	// that gdb finds it as 'File'::Name.
	File string
}

// DWARFFunction is a function for BTF.DWARF to describe at [Addr,
// Addr+Size) with the prototype of the BTF_KIND_FUNC of the same name.
// Size 0 is taken as 1. Static (a kallsyms 't') leaves out DW_AT_external;
// BTF's own FUNC linkage says nothing useful (pahole marks every function
// static).
type DWARFFunction struct {
	Name       string
	Addr, Size uint64
	Static     bool
}

// DWARFSections is generated DWARF 4: the contents of .debug_abbrev,
// .debug_info and .debug_str. Skipped says which variables and functions
// were left out, and why.
type DWARFSections struct {
	Abbrev, Info, Str []byte
	Skipped           []string
}

// BTFVar is a BTF_KIND_VAR: its name, its own id, the id of its type, its
// linkage (0 static, 1 global, 2 extern) and, when a DATASEC places it,
// the section's name (".data..percpu" for per-CPU variables) and the
// variable's offset and size in it.
type BTFVar struct {
	Name    string
	ID      uint32
	Type    uint32
	Linkage uint32
	Section string
	Offset  uint32
	Size    uint32
}

// Variables lists the BTF_KIND_VARs in id order.
func (b *BTF) Variables() []BTFVar {
	type place struct {
		sec          string
		offset, size uint32
	}
	placed := map[uint32]place{}
	for _, t := range b.types {
		if t.kind != BTF_KIND_DATASEC {
			continue
		}
		for _, si := range t.secinfo {
			if _, dup := placed[si.typ]; !dup {
				placed[si.typ] = place{t.name, si.offset, si.size}
			}
		}
	}
	var out []BTFVar
	for id, t := range b.types {
		if t.kind != BTF_KIND_VAR {
			continue
		}
		v := BTFVar{Name: t.name, ID: uint32(id), Type: t.sizeOrT, Linkage: t.linkage}
		if p, ok := placed[uint32(id)]; ok {
			v.Section, v.Offset, v.Size = p.sec, p.offset, p.size
		}
		out = append(out, v)
	}
	return out
}

// TypeID finds a type by name as DWARFVariable.TypeName gives it, without
// the "*"s: "struct NAME", "union NAME", "enum NAME" (a definition before
// a forward declaration), or a typedef, base or float type name.
func (b *BTF) TypeID(name string) (uint32, error) {
	kw, bare := splitTypeName(strings.TrimSpace(name))
	var kinds []uint8
	switch kw {
	case "struct":
		kinds = []uint8{BTF_KIND_STRUCT}
	case "union":
		kinds = []uint8{BTF_KIND_UNION}
	case "enum":
		kinds = []uint8{BTF_KIND_ENUM, BTF_KIND_ENUM64}
	default:
		kinds = []uint8{BTF_KIND_TYPEDEF, BTF_KIND_INT, BTF_KIND_FLOAT}
	}
	var fwd uint32
	for _, id := range b.byName[bare] {
		t := &b.types[id]
		for _, k := range kinds {
			if t.kind != k {
				continue
			}
			if (k == BTF_KIND_ENUM || k == BTF_KIND_ENUM64) && t.vlen == 0 {
				if fwd == 0 {
					fwd = id
				}
				continue
			}
			return id, nil
		}
		if t.kind == BTF_KIND_FWD && fwd == 0 && (kw == "struct" && !t.kflag || kw == "union" && t.kflag) {
			fwd = id
		}
	}
	if fwd != 0 {
		return fwd, nil
	}
	if alias, ok := gccBaseNames[strings.Join(strings.Fields(name), " ")]; ok {
		return b.TypeID(alias)
	}
	return 0, fmt.Errorf("%w: %s has no %s", ErrNoType, b.originName(), name)
}

// gccBaseNames are the names gcc (and so pahole) gives the C base types
// that have other spellings.
var gccBaseNames = map[string]string{
	"long": "long int", "signed long": "long int", "unsigned long": "long unsigned int",
	"long long": "long long int", "unsigned long long": "long long unsigned int",
	"short": "short int", "unsigned short": "short unsigned int",
	"unsigned": "unsigned int", "signed": "int", "signed int": "int", "bool": "_Bool",
}

// DWARF tags, attributes and constants used (DWARF 4, section 7; the
// forms are dwarfscan.go's).
const (
	dwTagArrayType       = 0x01
	dwTagEnumerationType = 0x04
	dwTagFormalParameter = 0x05
	dwTagMember          = 0x0d
	dwTagPointerType     = 0x0f
	dwTagCompileUnit     = 0x11
	dwTagStructureType   = 0x13
	dwTagSubroutineType  = 0x15
	dwTagTypedef         = 0x16
	dwTagUnionType       = 0x17
	dwTagUnspecifiedPars = 0x18
	dwTagSubrangeType    = 0x21
	dwTagBaseType        = 0x24
	dwTagConstType       = 0x26
	dwTagEnumerator      = 0x28
	dwTagSubprogram      = 0x2e
	dwTagVariable        = 0x34
	dwTagVolatileType    = 0x35
	dwTagRestrictType    = 0x37

	dwAtLocation         = 0x02
	dwAtName             = 0x03
	dwAtByteSize         = 0x0b
	dwAtLowPC            = 0x11
	dwAtHighPC           = 0x12
	dwAtLanguage         = 0x13
	dwAtProducer         = 0x25
	dwAtPrototyped       = 0x27
	dwAtConstValue       = 0x1c
	dwAtCount            = 0x37
	dwAtDataMemberLoc    = 0x38
	dwAtDeclaration      = 0x3c
	dwAtEncoding         = 0x3e
	dwAtExternal         = 0x3f
	dwAtType             = 0x49
	dwAtDataBitOffset    = 0x6b
	dwAtBitSize          = 0x0d
	dwOpAddr             = 0x03
	dwLangC11            = 0x1d
	dwAteBoolean         = 0x02
	dwAteFloat           = 0x04
	dwAteSigned          = 0x05
	dwAteSignedChar      = 0x06
	dwAteUnsigned        = 0x07
	dwAteUnsignedChar    = 0x08
	dwChildrenNo         = 0
	dwChildrenYes        = 1
	cuHeaderSize         = 11 // unit_length, version, debug_abbrev_offset, address_size
	maxQualifierChainLen = 64
)

type dwarfGen struct {
	b      *BTF
	abbrev []byte
	codes  map[string]uint64
	info   []byte
	str    []byte
	strOff map[string]uint32
	off    []uint32 // DIE offset of each BTF id (0: none)
	target []uint32 // what a reference to each BTF id refers to (0: void)
	fixups []fixup
	err    error
}

// fixup is a DW_FORM_ref4 at pos to be set to the DIE of id: a BTF id,
// or one past them for a pointer DIE made for a variable.
type fixup struct {
	pos int
	id  uint32
}

// DWARF generates DWARF 4 for every type in b, and for vars and funcs.
// Variables whose type cannot be found and functions that BTF has no
// FUNC for are left out and listed in Skipped.
func (b *BTF) DWARF(vars []DWARFVariable, funcs []DWARFFunction) (*DWARFSections, error) {
	g := &dwarfGen{b: b, codes: map[string]uint64{}, strOff: map[string]uint32{}, str: []byte{0}}
	g.strOff[""] = 0
	g.targets()
	g.off = make([]uint32, len(b.types))

	// The unit header; unit_length is set at the end.
	g.info = append(g.info, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 8)
	g.die(dwTagCompileUnit, true, dwAtProducer, dwFormStrp, dwAtName, dwFormStrp, dwAtLanguage, dwFormData2)
	g.strp("vmcore-gdbserver (types from BTF)")
	g.strp("<BTF>")
	g.u16(dwLangC11)

	for id := 1; id < len(b.types); id++ {
		g.typeDIE(uint32(id))
		if g.check(); g.err != nil {
			return nil, g.err
		}
	}
	out := &DWARFSections{}
	for _, f := range funcs {
		if why := g.function(f); why != "" {
			out.Skipped = append(out.Skipped, fmt.Sprintf("function %s: %s", f.Name, why))
		}
		if g.check(); g.err != nil {
			return nil, g.err
		}
	}
	// A file's variables: their types (helper pointer and array DIEs
	// included) in this unit, the variables in the file's own.
	type fileVar struct {
		v   DWARFVariable
		typ uint32
	}
	byFile := map[string][]fileVar{}
	for _, v := range vars {
		if v.File != "" {
			if why := badName(v.File); why != "" {
				out.Skipped = append(out.Skipped, fmt.Sprintf("variable %s: file %s", v.Name, why))
				continue
			}
			typ, why := g.variableType(v)
			if why == "" {
				byFile[v.File] = append(byFile[v.File], fileVar{v, typ})
			} else {
				out.Skipped = append(out.Skipped, fmt.Sprintf("variable %s: %s", v.Name, why))
			}
			continue
		}
		if why := g.variable(v); why != "" {
			out.Skipped = append(out.Skipped, fmt.Sprintf("variable %s: %s", v.Name, why))
		}
		if g.check(); g.err != nil {
			return nil, g.err
		}
	}
	g.info = append(g.info, 0) // end of the unit's children
	le := binary.LittleEndian
	le.PutUint32(g.info, uint32(len(g.info)-4))
	files := make([]string, 0, len(byFile))
	for f := range byFile {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		// Its types are in the first unit: references across units are
		// DW_FORM_ref_addr, offsets from the start of .debug_info.
		start := len(g.info)
		g.info = append(g.info, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 8)
		g.die(dwTagCompileUnit, true, dwAtProducer, dwFormStrp, dwAtName, dwFormStrp, dwAtLanguage, dwFormData2)
		g.strp("vmcore-gdbserver (types from BTF)")
		g.strp(f)
		g.u16(dwLangC11)
		for _, fv := range byFile[f] {
			g.emitVariable(fv.v, fv.typ, dwFormRefAddr)
		}
		g.info = append(g.info, 0)
		le.PutUint32(g.info[start:], uint32(len(g.info)-start-4))
		if g.check(); g.err != nil {
			return nil, g.err
		}
	}
	g.abbrev = append(g.abbrev, 0)
	if g.check(); g.err != nil {
		return nil, g.err
	}
	for _, f := range g.fixups {
		le.PutUint32(g.info[f.pos:], g.off[f.id])
	}
	out.Abbrev, out.Info, out.Str = g.abbrev, g.info, g.str
	return out, nil
}

func (g *dwarfGen) check() {
	if g.err == nil && len(g.info)+len(g.str)+len(g.abbrev) > maxDWARFBytes {
		g.err = fmt.Errorf("%w: more than %d bytes", ErrDWARFTooLarge, maxDWARFBytes)
	}
}

// hasDIE says whether a BTF kind is written as a type DIE.
func hasDIE(kind uint8) bool {
	switch kind {
	case BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_ARRAY, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM,
		BTF_KIND_FWD, BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT,
		BTF_KIND_FUNC_PROTO, BTF_KIND_FLOAT, BTF_KIND_ENUM64:
		return true
	}
	return false
}

// chains are the kinds whose meaning is their target's: a loop of them
// (or one longer than maxQualifierChainLen) has no meaning, and a
// debugger following it would not come back.
func chains(kind uint8) bool {
	switch kind {
	case BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG, BTF_KIND_ARRAY:
		return true
	}
	return false
}

// next is the id a chaining kind stands on.
func (t *btfType) next() uint32 {
	if t.kind == BTF_KIND_ARRAY {
		return t.array[0]
	}
	return t.sizeOrT
}

// targets works out, for every BTF id, the DIE a reference to it refers
// to: its own, its target's for a TYPE_TAG, none (void) for an id out of
// range, a kind that is not a type, or a type on a loop of typedefs,
// qualifiers and arrays.
func (g *dwarfGen) targets() {
	b := g.b
	n := len(b.types)
	const (
		unknown = iota
		ok
		bad
	)
	state := make([]uint8, n)
	var path []uint32
	onPath := map[uint32]bool{}
	for start := 1; start < n; start++ {
		if state[start] != unknown {
			continue
		}
		path = path[:0]
		clear(onPath)
		res := uint8(ok)
		id := uint32(start)
		for {
			if id == 0 || int(id) >= n || state[id] == ok {
				break
			}
			if state[id] == bad || onPath[id] || len(path) > maxQualifierChainLen {
				res = bad
				break
			}
			path = append(path, id)
			onPath[id] = true
			if !chains(b.types[id].kind) {
				break
			}
			id = b.types[id].next()
		}
		for _, p := range path {
			state[p] = res
		}
	}
	g.target = make([]uint32, n)
	for id := 1; id < n; id++ {
		if state[id] == bad {
			continue
		}
		t, steps := uint32(id), 0
		for int(t) < n && b.types[t].kind == BTF_KIND_TYPE_TAG && steps <= maxQualifierChainLen {
			t = b.types[t].sizeOrT
			steps++
		}
		if t != 0 && int(t) < n && state[t] != bad && hasDIE(b.types[t].kind) {
			g.target[id] = t
		}
	}
}

// ref is the DIE a reference to id is to, 0 for void.
func (g *dwarfGen) ref(id uint32) uint32 {
	if int(id) >= len(g.target) {
		return 0
	}
	return g.target[id]
}

// die writes a DIE's abbreviation code, defining the abbreviation (tag,
// children, then attribute and form pairs) the first time it is used.
func (g *dwarfGen) die(tag uint16, children bool, attrForms ...uint16) {
	var k strings.Builder
	k.WriteString(strconv.Itoa(int(tag)))
	if children {
		k.WriteByte('+')
	}
	for _, a := range attrForms {
		k.WriteByte(',')
		k.WriteString(strconv.Itoa(int(a)))
	}
	code, ok := g.codes[k.String()]
	if !ok {
		code = uint64(len(g.codes) + 1)
		g.codes[k.String()] = code
		g.abbrev = appendUleb(g.abbrev, code)
		g.abbrev = appendUleb(g.abbrev, uint64(tag))
		if children {
			g.abbrev = append(g.abbrev, dwChildrenYes)
		} else {
			g.abbrev = append(g.abbrev, dwChildrenNo)
		}
		for _, a := range attrForms {
			g.abbrev = appendUleb(g.abbrev, uint64(a))
		}
		g.abbrev = append(g.abbrev, 0, 0)
	}
	g.info = appendUleb(g.info, code)
}

func appendUleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendSleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func (g *dwarfGen) u8(v uint8)   { g.info = append(g.info, v) }
func (g *dwarfGen) u16(v uint16) { g.info = binary.LittleEndian.AppendUint16(g.info, v) }
func (g *dwarfGen) u64(v uint64) { g.info = binary.LittleEndian.AppendUint64(g.info, v) }
func (g *dwarfGen) uleb(v uint64) {
	g.info = appendUleb(g.info, v)
}
func (g *dwarfGen) sleb(v int64) { g.info = appendSleb(g.info, v) }

func (g *dwarfGen) strp(s string) {
	o, ok := g.strOff[s]
	if !ok {
		o = uint32(len(g.str))
		g.str = append(append(g.str, s...), 0)
		g.strOff[s] = o
	}
	g.info = binary.LittleEndian.AppendUint32(g.info, o)
}

// typeRef writes a reference to the DIE of id (already resolved by ref).
func (g *dwarfGen) typeRef(id uint32) {
	g.fixups = append(g.fixups, fixup{pos: len(g.info), id: id})
	g.info = append(g.info, 0, 0, 0, 0)
}

// attrs builds an attribute list: name (strp) when named, then the
// others, then type (ref4) when typ is not void.
func attrs(named bool, typ uint32, rest ...uint16) []uint16 {
	var a []uint16
	if named {
		a = append(a, dwAtName, dwFormStrp)
	}
	a = append(a, rest...)
	if typ != 0 {
		a = append(a, dwAtType, dwFormRef4)
	}
	return a
}

func (g *dwarfGen) typeDIE(id uint32) {
	b := g.b
	t := &b.types[id]
	if !hasDIE(t.kind) {
		return
	}
	g.off[id] = uint32(len(g.info))
	named := t.name != ""
	name := func() {
		if named {
			g.strp(t.name)
		}
	}
	switch t.kind {
	case BTF_KIND_INT, BTF_KIND_FLOAT:
		g.die(dwTagBaseType, false, attrs(named, 0, dwAtEncoding, dwFormData1, dwAtByteSize, dwFormUdata)...)
		name()
		g.u8(intEncoding(t))
		g.uleb(uint64(t.sizeOrT))
	case BTF_KIND_PTR:
		to := g.ref(t.sizeOrT)
		g.die(dwTagPointerType, false, attrs(false, to, dwAtByteSize, dwFormData1)...)
		g.u8(8)
		if to != 0 {
			g.typeRef(to)
		}
	case BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT:
		tag := map[uint8]uint16{BTF_KIND_TYPEDEF: dwTagTypedef, BTF_KIND_VOLATILE: dwTagVolatileType,
			BTF_KIND_CONST: dwTagConstType, BTF_KIND_RESTRICT: dwTagRestrictType}[t.kind]
		if t.kind != BTF_KIND_TYPEDEF {
			named = false
		}
		to := g.ref(t.sizeOrT)
		g.die(tag, false, attrs(named, to)...)
		name()
		if to != 0 {
			g.typeRef(to)
		}
	case BTF_KIND_ARRAY:
		elem, index := g.ref(t.array[0]), g.ref(t.array[1])
		if index != 0 && b.types[index].kind != BTF_KIND_INT {
			index = 0
		}
		g.die(dwTagArrayType, true, attrs(false, elem)...)
		if elem != 0 {
			g.typeRef(elem)
		}
		// No count for 0 elements: gcc's DWARF for a flexible array
		// member, which is what BTF's 0-element arrays mostly are.
		if n := t.array[2]; n != 0 {
			g.die(dwTagSubrangeType, false, attrs(false, index, dwAtCount, dwFormUdata)...)
			g.uleb(uint64(n))
		} else {
			g.die(dwTagSubrangeType, false, attrs(false, index)...)
		}
		if index != 0 {
			g.typeRef(index)
		}
		g.u8(0)
	case BTF_KIND_STRUCT, BTF_KIND_UNION:
		tag := uint16(dwTagStructureType)
		if t.kind == BTF_KIND_UNION {
			tag = dwTagUnionType
		}
		g.die(tag, len(t.members) > 0, attrs(named, 0, dwAtByteSize, dwFormUdata)...)
		name()
		g.uleb(uint64(t.sizeOrT))
		for _, m := range t.members {
			g.member(t, m)
		}
		if len(t.members) > 0 {
			g.u8(0)
		}
	case BTF_KIND_ENUM, BTF_KIND_ENUM64:
		if len(t.enums) == 0 {
			g.die(dwTagEnumerationType, false, attrs(named, 0, dwAtByteSize, dwFormUdata, dwAtDeclaration, dwFormFlagPresent)...)
			name()
			g.uleb(uint64(t.sizeOrT))
			return
		}
		g.die(dwTagEnumerationType, true, attrs(named, 0, dwAtByteSize, dwFormUdata)...)
		name()
		g.uleb(uint64(t.sizeOrT))
		// ParseBTF keeps signed values sign-extended and unsigned ones
		// zero-extended, except ENUM64, which it keeps as the raw 64 bits.
		signed := t.kflag
		for _, e := range t.enums {
			if signed || t.kind == BTF_KIND_ENUM && e.value < 0 {
				g.die(dwTagEnumerator, false, dwAtName, dwFormStrp, dwAtConstValue, dwFormSdata)
				g.strp(e.name)
				g.sleb(e.value)
			} else {
				g.die(dwTagEnumerator, false, dwAtName, dwFormStrp, dwAtConstValue, dwFormUdata)
				g.strp(e.name)
				g.uleb(uint64(e.value))
			}
		}
		g.u8(0)
	case BTF_KIND_FWD:
		tag := uint16(dwTagStructureType)
		if t.kflag {
			tag = dwTagUnionType
		}
		g.die(tag, false, attrs(named, 0, dwAtDeclaration, dwFormFlagPresent)...)
		name()
	case BTF_KIND_FUNC_PROTO:
		ret := g.ref(t.sizeOrT)
		g.die(dwTagSubroutineType, len(t.params) > 0, attrs(false, ret, dwAtPrototyped, dwFormFlagPresent)...)
		if ret != 0 {
			g.typeRef(ret)
		}
		g.params(t, false)
	}
}

// intEncoding is an INT's or FLOAT's DW_AT_encoding. BTF marks few chars
// as such (pahole gives plain char BTF_INT_SIGNED or nothing): a one-byte
// int named as a char is one, so that a debugger prints strings.
func intEncoding(t *btfType) uint8 {
	if t.kind == BTF_KIND_FLOAT {
		return dwAteFloat
	}
	enc := t.intEnc >> 24
	signed := enc&btfIntSigned != 0
	switch {
	case enc&btfIntBool != 0:
		return dwAteBoolean
	case enc&btfIntChar != 0 || t.sizeOrT == 1 && (t.name == "char" || t.name == "signed char" || t.name == "unsigned char"):
		if signed {
			return dwAteSignedChar
		}
		return dwAteUnsignedChar
	case signed:
		return dwAteSigned
	}
	return dwAteUnsigned
}

// member writes a struct or union member: at a byte offset, or, for a
// bitfield (or a member not on a byte), at a bit offset with its width.
func (g *dwarfGen) member(s *btfType, m btfMember) {
	b := g.b
	typ := g.ref(m.typ)
	bitOff, bitSize := uint64(m.bitOffset), uint64(m.bitSize)
	if !s.kflag {
		// Old-style bitfield: the offset and width are the INT's.
		if r, err := b.resolve(m.typ); err == nil && r != 0 && b.types[r].kind == BTF_KIND_INT {
			it := &b.types[r]
			bits, off := uint64(it.intEnc&0xff), uint64(it.intEnc>>16&0xff)
			if bits != 0 && (bits != 8*uint64(it.sizeOrT) || off != 0) {
				bitOff += off
				bitSize = bits
			}
		}
	}
	named := m.name != ""
	switch {
	case bitSize != 0:
		g.die(dwTagMember, false, attrs(named, typ, dwAtDataBitOffset, dwFormUdata, dwAtBitSize, dwFormUdata)...)
	case bitOff%8 != 0:
		g.die(dwTagMember, false, attrs(named, typ, dwAtDataBitOffset, dwFormUdata)...)
	default:
		g.die(dwTagMember, false, attrs(named, typ, dwAtDataMemberLoc, dwFormUdata)...)
	}
	if named {
		g.strp(m.name)
	}
	switch {
	case bitSize != 0:
		g.uleb(bitOff)
		g.uleb(bitSize)
	case bitOff%8 != 0:
		g.uleb(bitOff)
	default:
		g.uleb(bitOff / 8)
	}
	if typ != 0 {
		g.typeRef(typ)
	}
}

// params writes a FUNC_PROTO's parameters as children (with their names
// when named is set: a subprogram's), and the end of the children. A
// last parameter of type void is "...".
func (g *dwarfGen) params(proto *btfType, named bool) {
	if len(proto.params) == 0 {
		return
	}
	for i, p := range proto.params {
		if i == len(proto.params)-1 && p.typ == 0 && p.name == "" {
			g.die(dwTagUnspecifiedPars, false)
			continue
		}
		typ := g.ref(p.typ)
		hasName := named && p.name != ""
		g.die(dwTagFormalParameter, false, attrs(hasName, typ)...)
		if hasName {
			g.strp(p.name)
		}
		if typ != 0 {
			g.typeRef(typ)
		}
	}
	g.u8(0)
}

// badName says what is wrong with a name the caller gives, if anything.
func badName(name string) string {
	switch {
	case name == "":
		return "no name"
	case strings.IndexByte(name, 0) >= 0:
		return "NUL in the name"
	}
	return ""
}

func (g *dwarfGen) function(f DWARFFunction) string {
	b := g.b
	if why := badName(f.Name); why != "" {
		return why
	}
	var fn *btfType
	for _, id := range b.byName[f.Name] {
		if b.types[id].kind == BTF_KIND_FUNC {
			fn = &b.types[id]
			break
		}
	}
	if fn == nil {
		return "no BTF_KIND_FUNC"
	}
	p := g.ref(fn.sizeOrT)
	if p == 0 || b.types[p].kind != BTF_KIND_FUNC_PROTO {
		return "its BTF_KIND_FUNC has no prototype"
	}
	proto := &b.types[p]
	ret := g.ref(proto.sizeOrT)
	size := f.Size
	if size == 0 {
		size = 1
	}
	a := []uint16{dwAtName, dwFormStrp}
	if !f.Static {
		a = append(a, dwAtExternal, dwFormFlagPresent)
	}
	a = append(a, dwAtPrototyped, dwFormFlagPresent, dwAtLowPC, dwFormAddr, dwAtHighPC, dwFormData8)
	if ret != 0 {
		a = append(a, dwAtType, dwFormRef4)
	}
	g.die(dwTagSubprogram, len(proto.params) > 0, a...)
	g.strp(f.Name)
	g.u64(f.Addr)
	g.u64(size)
	if ret != 0 {
		g.typeRef(ret)
	}
	g.params(proto, true)
	return ""
}

func (g *dwarfGen) variable(v DWARFVariable) string {
	typ, why := g.variableType(v)
	if why != "" {
		return why
	}
	g.emitVariable(v, typ, dwFormRef4)
	return ""
}

// variableType writes what a variable's type needs beyond BTF's own DIEs
// (pointers to it, an array of it) and returns the DIE to refer to, or
// why the variable cannot be described.
func (g *dwarfGen) variableType(v DWARFVariable) (uint32, string) {
	b := g.b
	if why := badName(v.Name); why != "" {
		return 0, why
	}
	var typ uint32
	if v.TypeID != 0 {
		if typ = g.ref(v.TypeID); typ == 0 {
			return 0, fmt.Sprintf("BTF type id %d is not a type", v.TypeID)
		}
	} else {
		base := strings.TrimSpace(v.TypeName)
		ptrs := 0
		for strings.HasSuffix(base, "*") {
			base = strings.TrimSpace(strings.TrimSuffix(base, "*"))
			ptrs++
		}
		if base == "void" && ptrs == 0 {
			return 0, "type void"
		}
		if base != "void" {
			id, err := b.TypeID(base)
			if err != nil {
				return 0, err.Error()
			}
			typ = g.ref(id)
			if typ == 0 {
				return 0, fmt.Sprintf("type %s (BTF id %d) is not usable", base, id)
			}
		}
		// Pointers are made here: BTF may have no pointer to the type.
		if ptrs > 0 {
			start := len(g.off)
			for i := 0; i < ptrs; i++ {
				off := uint32(len(g.info))
				g.die(dwTagPointerType, false, attrs(false, typ, dwAtByteSize, dwFormData1)...)
				g.u8(8)
				if typ != 0 {
					g.typeRef(typ)
				}
				// A pseudo id past the BTF ids, for the fixups.
				g.off = append(g.off, off)
				typ = uint32(start + i)
			}
		}
	}
	if v.Count > 0 && typ != 0 {
		off := uint32(len(g.info))
		g.die(dwTagArrayType, true, attrs(false, typ)...)
		g.typeRef(typ)
		g.die(dwTagSubrangeType, false, dwAtCount, dwFormUdata)
		g.uleb(v.Count)
		g.u8(0)
		g.off = append(g.off, off)
		typ = uint32(len(g.off) - 1)
	}
	return typ, ""
}

// emitVariable writes the variable's DIE, its type referred to with form
// (ref4 in the unit of the types, ref_addr from another unit).
func (g *dwarfGen) emitVariable(v DWARFVariable, typ uint32, form uint16) {
	if v.Static {
		g.die(dwTagVariable, false, dwAtName, dwFormStrp, dwAtLocation, dwFormExprloc, dwAtType, form)
	} else {
		g.die(dwTagVariable, false, dwAtName, dwFormStrp, dwAtExternal, dwFormFlagPresent,
			dwAtLocation, dwFormExprloc, dwAtType, form)
	}
	g.strp(v.Name)
	g.uleb(9)
	g.u8(dwOpAddr)
	g.u64(v.Addr)
	g.typeRef(typ)
}
