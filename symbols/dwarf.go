package symbols

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DWARFTypes answers the kernel model's type questions from a vmlinux's
// DWARF (.debug_info), for kernels built without CONFIG_DEBUG_INFO_BTF.
//
// Memory stays bounded: the sections are mapped, not read (the 6.1
// vmlinux has 164 MB of .debug_info), and no DIE tree is built. The first
// question builds a name index in one pass over the top-level DIEs of
// every compilation unit with a scanner of its own (dwarfscan.go),
// skipping children by DW_AT_sibling; members are read with debug/dwarf
// when a struct is first asked about, then cached.
//
// A name defined in several units (every unit including a header has its
// own copy) resolves to the first complete definition in .debug_info
// order: declarations (DW_AT_declaration) are skipped, and a struct or
// union with members is preferred over an empty one of the same name.
// An enumerator name resolves to its first enum in the same order. BTF's
// rule is first match in type-id order; the two agree on every name the
// model reads (TestTypesAgree).
type DWARFTypes struct {
	path  string
	sec   map[string][]byte
	scan  *dwarfScanner
	unmap func()

	once   sync.Once
	idxErr error
	ix     *dwarfNameIndex

	symOnce sync.Once // functions and variables, for whatis (symbolIndex)
	symErr  error
	syms    *dwarfSymbolIndex

	mu      sync.Mutex
	units   map[uint64]*unitData // by start, made when first read
	whole   *dwarf.Data          // all of .debug_info, made only if needed
	members map[dwarf.Offset]*dwarfStruct
}

type dwarfStruct struct {
	size    uint64
	members []dwarfMember
}

type dwarfMember struct {
	name    string
	typ     dwarf.Offset
	bitOff  uint64
	bitSize uint64 // DW_AT_bit_size of a bitfield; 0 otherwise
}

// Sections a DWARFTypes reads; everything else (.debug_line, location
// lists, ranges) is never touched.
var dwarfSections = []string{".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str", ".debug_str_offsets", ".debug_addr"}

// NewDWARFTypes builds a type source from raw DWARF sections (by ELF
// name; .debug_info and .debug_abbrev are required). name is used in
// errors. Nothing is decoded until the first question.
func NewDWARFTypes(name string, sec map[string][]byte) (*DWARFTypes, error) {
	if len(sec[".debug_info"]) == 0 || len(sec[".debug_abbrev"]) == 0 {
		return nil, fmt.Errorf("%s: %w: no DWARF (.debug_info, .debug_abbrev)", name, ErrNoType)
	}
	scan := &dwarfScanner{file: name, info: sec[".debug_info"], abbrevSec: sec[".debug_abbrev"], str: sec[".debug_str"],
		lineStr: sec[".debug_line_str"], strOffsets: sec[".debug_str_offsets"]}
	return &DWARFTypes{path: name, sec: sec, scan: scan, units: map[uint64]*unitData{}, members: map[dwarf.Offset]*dwarfStruct{}}, nil
}

// newData makes a debug/dwarf reader of info (the whole .debug_info or
// one unit of it) with the other sections.
func (t *DWARFTypes) newData(info []byte) (d *dwarf.Data, err error) {
	defer guard(t.path, &err)
	d, err = dwarf.New(t.sec[".debug_abbrev"], nil, nil, info, nil, nil, nil, t.sec[".debug_str"])
	if err != nil {
		return nil, fmt.Errorf("%s: DWARF: %w", t.path, err)
	}
	for _, s := range dwarfSections[3:] {
		if len(t.sec[s]) > 0 {
			if err := d.AddSection(s, t.sec[s]); err != nil {
				return nil, fmt.Errorf("%s: DWARF %s: %w", t.path, s, err)
			}
		}
	}
	return d, nil
}

// unitData is a debug/dwarf reader for the DIEs of one unit. debug/dwarf
// parses every unit's abbreviations when it is made, which on a kernel
// costs more than the name index; made of one unit's bytes it costs
// that unit's. Its offsets are the unit's own, base less than the file's.
type unitData struct {
	start, end uint64
	data       *dwarf.Data
	base       dwarf.Offset
}

// unitAt returns (making it once) the reader of the unit holding off.
func (t *DWARFTypes) unitAt(off dwarf.Offset) (*unitData, error) {
	us := t.scan.units
	i := sort.Search(len(us), func(i int) bool { return us[i].end > uint64(off) })
	if i == len(us) || uint64(off) < us[i].start {
		return nil, fmt.Errorf("%s: .debug_info at 0x%x: %w: no unit holds the offset", t.path, off, ErrMalformedDWARF)
	}
	u := us[i]
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.units[u.start]; ok {
		return d, nil
	}
	ud := &unitData{start: u.start, end: u.end, base: dwarf.Offset(u.start)}
	if u.refAddr {
		// A DW_FORM_ref_addr is a file offset: only a reader of the
		// whole section follows it.
		if t.whole == nil {
			d, err := t.newData(t.scan.info)
			if err != nil {
				return nil, err
			}
			t.whole = d
		}
		ud.data, ud.base = t.whole, 0
	} else {
		d, err := t.newData(t.scan.info[u.start:u.end])
		if err != nil {
			return nil, err
		}
		ud.data = d
	}
	t.units[u.start] = ud
	return ud, nil
}

// dieCursor reads DIEs through the reader of their unit; every offset
// it takes and returns is the file's.
type dieCursor struct {
	t    *DWARFTypes
	r    *dwarf.Reader
	unit *unitData
}

func (c *dieCursor) seek(off dwarf.Offset) error {
	if c.unit == nil || uint64(off) < c.unit.start || uint64(off) >= c.unit.end {
		u, err := c.t.unitAt(off)
		if err != nil {
			return err
		}
		c.unit, c.r = u, u.data.Reader()
	}
	c.r.Seek(off - c.unit.base)
	return nil
}

func (c *dieCursor) Next() (*dwarf.Entry, error) {
	if c.r == nil {
		return nil, nil
	}
	e, err := c.r.Next()
	if err != nil || e == nil || c.unit.base == 0 {
		return e, err
	}
	e.Offset += c.unit.base
	for i := range e.Field {
		if o, ok := e.Field[i].Val.(dwarf.Offset); ok && e.Field[i].Class == dwarf.ClassReference {
			e.Field[i].Val = o + c.unit.base
		}
	}
	return e, nil
}

func (c *dieCursor) SkipChildren() {
	if c.r != nil {
		c.r.SkipChildren()
	}
}

// guard turns a panic of the DWARF decoder on hostile input into an error.
func guard(name string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: malformed DWARF: %v", name, r)
	}
}

// DWARF returns the type source made from the vmlinux's DWARF.
func (v *Vmlinux) DWARF() (*DWARFTypes, error) {
	v.dwarfOnce.Do(func() { v.dwarf, v.dwarfErr = v.loadDWARF() })
	return v.dwarf, v.dwarfErr
}

func (v *Vmlinux) loadDWARF() (*DWARFTypes, error) {
	if v.elf.Section(".debug_info") == nil {
		return nil, fmt.Errorf("%s: no DWARF (.debug_info section): the vmlinux is stripped of debug information", v.path)
	}
	// One read-only mapping of the file; only the pages the index and the
	// lookups touch become resident, and they are page cache, not heap.
	var mapped []byte
	if v.size > 0 && int64(int(v.size)) == v.size {
		if m, err := unix.Mmap(int(v.file.Fd()), 0, int(v.size), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			mapped = m
		}
	}
	sec := map[string][]byte{}
	for _, name := range dwarfSections {
		s := v.elf.Section(name)
		if s == nil {
			continue
		}
		if s.Type == elf.SHT_NOBITS {
			return nil, fmt.Errorf("%s: section %s has no file data", v.path, name)
		}
		if s.Offset > uint64(v.size) || s.FileSize > uint64(v.size)-s.Offset {
			return nil, fmt.Errorf("%s: section %s at offset 0x%x (%d bytes) runs past the end of the file (%d bytes)", v.path, name, s.Offset, s.FileSize, v.size)
		}
		if mapped != nil && s.Flags&elf.SHF_COMPRESSED == 0 {
			sec[name] = mapped[s.Offset : s.Offset+s.FileSize]
			continue
		}
		d, err := v.sectionData(s, maxSectionBytes)
		if err != nil {
			return nil, err
		}
		sec[name] = d
	}
	t, err := NewDWARFTypes(v.path, sec)
	if err != nil {
		if mapped != nil {
			unix.Munmap(mapped)
		}
		return nil, err
	}
	if mapped != nil {
		t.unmap = func() { unix.Munmap(mapped) }
	}
	return t, nil
}

func (t *DWARFTypes) index() error {
	t.once.Do(func() {
		t.ix, t.idxErr = t.scan.buildIndex()
		t.scan.cur = nil // only the index pass reads abbreviations
	})
	return t.idxErr
}

func constant(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case uint64:
		return int64(v), true
	}
	return 0, false
}

// entry reads the DIE at off.
func (t *DWARFTypes) entry(r *dieCursor, off dwarf.Offset) (*dwarf.Entry, error) {
	if err := r.seek(off); err != nil {
		return nil, err
	}
	e, err := r.Next()
	if err != nil {
		return nil, fmt.Errorf("%s: .debug_info at 0x%x: %w", t.path, off, err)
	}
	if e == nil || e.Offset != off {
		return nil, fmt.Errorf("%s: .debug_info at 0x%x: no entry there", t.path, off)
	}
	return e, nil
}

// resolve follows typedefs and qualifiers to the type they name, with a
// bound against loops.
func (t *DWARFTypes) resolve(r *dieCursor, off dwarf.Offset) (*dwarf.Entry, error) {
	for i := 0; i < 64; i++ {
		e, err := t.entry(r, off)
		if err != nil {
			return nil, err
		}
		switch e.Tag {
		case dwarf.TagTypedef, dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType, dwarf.TagAtomicType:
			next, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
			if !ok {
				return e, nil // a typedef of void
			}
			off = next
		default:
			return e, nil
		}
	}
	return nil, fmt.Errorf("%s: .debug_info at 0x%x: qualifier chain too long", t.path, off)
}

// layout reads (once) the members of the struct or union at off.
func (t *DWARFTypes) layout(r *dieCursor, e *dwarf.Entry) (*dwarfStruct, error) {
	t.mu.Lock()
	s, ok := t.members[e.Offset]
	t.mu.Unlock()
	if ok {
		return s, nil
	}
	s = &dwarfStruct{}
	if n, ok := constant(e.Val(dwarf.AttrByteSize)); ok && n >= 0 {
		s.size = uint64(n)
	}
	if e.Children {
		for {
			c, err := r.Next()
			if err != nil {
				return nil, fmt.Errorf("%s: .debug_info at 0x%x: %w", t.path, e.Offset, err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			if c.Tag == dwarf.TagMember {
				m := dwarfMember{}
				m.name, _ = c.Val(dwarf.AttrName).(string)
				m.typ, _ = c.Val(dwarf.AttrType).(dwarf.Offset)
				m.bitOff = memberBitOffset(c)
				if n, ok := constant(c.Val(dwarf.AttrBitSize)); ok && n > 0 && n <= 64 {
					m.bitSize = uint64(n)
				}
				s.members = append(s.members, m)
			}
			if c.Children {
				r.SkipChildren()
			}
		}
	}
	t.mu.Lock()
	t.members[e.Offset] = s
	t.mu.Unlock()
	return s, nil
}

// memberBitOffset is a member's offset in bits: DW_AT_data_member_location
// (bytes) plus DW_AT_data_bit_offset (DWARF 4+), or for the older
// DW_AT_bit_offset, counted from the most significant bit of a storage
// unit of DW_AT_byte_size bytes.
func memberBitOffset(c *dwarf.Entry) uint64 {
	var bits uint64
	if loc, ok := constant(c.Val(dwarf.AttrDataMemberLoc)); ok && loc >= 0 {
		bits = uint64(loc) * 8
	}
	if dbo, ok := constant(c.Val(dwarf.AttrDataBitOffset)); ok && dbo >= 0 {
		bits += uint64(dbo)
	} else if bo, ok := constant(c.Val(dwarf.AttrBitOffset)); ok {
		size, _ := constant(c.Val(dwarf.AttrByteSize))
		bsize, _ := constant(c.Val(dwarf.AttrBitSize))
		bits += uint64(size*8 - bo - bsize)
	}
	return bits
}

func isAggregate(e *dwarf.Entry) bool {
	return e.Tag == dwarf.TagStructType || e.Tag == dwarf.TagUnionType
}

// findMember looks name up among s's members, descending into anonymous
// structs and unions; it returns the bit offset and the member's type.
func (t *DWARFTypes) findMember(r *dieCursor, s *dwarfStruct, name string, depth int) (uint64, dwarfMember, bool, error) {
	if depth > 16 {
		return 0, dwarfMember{}, false, nil
	}
	for _, m := range s.members {
		if m.name == name {
			return m.bitOff, m, true, nil
		}
		if m.name != "" || m.typ == 0 {
			continue
		}
		e, err := t.resolve(r, m.typ)
		if err != nil {
			return 0, dwarfMember{}, false, err
		}
		if !isAggregate(e) {
			continue
		}
		inner, err := t.layout(r, e)
		if err != nil {
			return 0, dwarfMember{}, false, err
		}
		if off, found, ok, err := t.findMember(r, inner, name, depth+1); ok || err != nil {
			return m.bitOff + off, found, ok, err
		}
	}
	return 0, dwarfMember{}, false, nil
}

// lookupStruct finds a struct or union by name (or a typedef naming one,
// as `typedef struct {...} name` does).
func (t *DWARFTypes) lookupStruct(r *dieCursor, name string) (*dwarf.Entry, error) {
	if err := t.index(); err != nil {
		return nil, err
	}
	off, ok := t.ix.structs[name]
	if !ok {
		td, ok := t.ix.typedef[name]
		if !ok {
			return nil, fmt.Errorf("%w: struct %s", ErrNoType, name)
		}
		e, err := t.resolve(r, td)
		if err != nil {
			return nil, err
		}
		if !isAggregate(e) {
			return nil, fmt.Errorf("%w: struct %s", ErrNoType, name)
		}
		return e, nil
	}
	return t.entry(r, off)
}

// walk follows a member path from struct structName; it returns the
// bit offset and the DIE offset of the last member's type.
func (t *DWARFTypes) walk(structName, path string) (bits uint64, typ dwarf.Offset, err error) {
	bits, last, err := t.walkMember(structName, path)
	return bits, last.typ, err
}

// walkMember is walk, returning the last member's record (its width).
func (t *DWARFTypes) walkMember(structName, path string) (bits uint64, last dwarfMember, err error) {
	defer guard(t.path, &err)
	r := &dieCursor{t: t}
	e, err := t.lookupStruct(r, structName)
	if err != nil {
		return 0, dwarfMember{}, err
	}
	for _, part := range strings.Split(path, ".") {
		if !isAggregate(e) {
			return 0, dwarfMember{}, fmt.Errorf("%w: %s.%s: %q is not inside a struct", ErrNoType, structName, path, part)
		}
		s, err := t.layout(r, e)
		if err != nil {
			return 0, dwarfMember{}, err
		}
		off, mt, ok, err := t.findMember(r, s, part, 0)
		if err != nil {
			return 0, dwarfMember{}, err
		}
		if !ok {
			return 0, dwarfMember{}, fmt.Errorf("%w: struct %s has no member %s", ErrNoType, structName, path)
		}
		bits += off
		last = mt
		if last.typ == 0 {
			return 0, dwarfMember{}, fmt.Errorf("%s: struct %s member %s has no type", t.path, structName, path)
		}
		if e, err = t.resolve(r, last.typ); err != nil {
			return 0, dwarfMember{}, err
		}
	}
	return bits, last, nil
}

// Offset returns the byte offset of a member path such as "thread.sp".
func (t *DWARFTypes) Offset(structName, path string) (uint64, error) {
	bits, _, err := t.walk(structName, path)
	if err != nil {
		return 0, err
	}
	if bits%8 != 0 {
		return 0, fmt.Errorf("%s.%s is a bitfield", structName, path)
	}
	return bits / 8, nil
}

// Sizeof returns the size in bytes of a struct or union.
func (t *DWARFTypes) Sizeof(structName string) (n uint64, err error) {
	defer guard(t.path, &err)
	e, err := t.lookupStruct(&dieCursor{t: t}, structName)
	if err != nil {
		return 0, err
	}
	size, ok := constant(e.Val(dwarf.AttrByteSize))
	if !ok || size < 0 {
		return 0, fmt.Errorf("%s: .debug_info at 0x%x: struct %s has no size", t.path, e.Offset, structName)
	}
	return uint64(size), nil
}

// ArrayLen returns the element count of an array member's first
// dimension (DW_AT_count, or DW_AT_upper_bound + 1; 0 when neither: a
// flexible array).
func (t *DWARFTypes) ArrayLen(structName, path string) (n uint64, err error) {
	_, typ, err := t.walk(structName, path)
	if err != nil {
		return 0, err
	}
	defer guard(t.path, &err)
	r := &dieCursor{t: t}
	e, err := t.resolve(r, typ)
	if err != nil {
		return 0, err
	}
	if e.Tag != dwarf.TagArrayType {
		return 0, fmt.Errorf("%s.%s is not an array", structName, path)
	}
	if !e.Children {
		return 0, nil
	}
	for {
		c, err := r.Next()
		if err != nil {
			return 0, fmt.Errorf("%s: .debug_info at 0x%x: %w", t.path, e.Offset, err)
		}
		if c == nil || c.Tag == 0 {
			return 0, nil
		}
		if c.Tag != dwarf.TagSubrangeType {
			continue
		}
		if n, ok := constant(c.Val(dwarf.AttrCount)); ok && n >= 0 {
			return uint64(n), nil
		}
		if ub, ok := constant(c.Val(dwarf.AttrUpperBound)); ok && ub >= -1 {
			return uint64(ub + 1), nil
		}
		return 0, nil
	}
}

// Enum returns the enumerators of enum name.
func (t *DWARFTypes) Enum(name string) (m map[string]int64, err error) {
	if err := t.index(); err != nil {
		return nil, err
	}
	off, ok := t.ix.enums[name]
	if !ok {
		return nil, fmt.Errorf("%w: enum %s", ErrNoType, name)
	}
	defer guard(t.path, &err)
	r := &dieCursor{t: t}
	if _, err := t.entry(r, off); err != nil {
		return nil, err
	}
	m = map[string]int64{}
	for {
		c, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: .debug_info at 0x%x: %w", t.path, off, err)
		}
		if c == nil || c.Tag == 0 {
			return m, nil
		}
		if c.Tag == dwarf.TagEnumerator {
			n, _ := c.Val(dwarf.AttrName).(string)
			if v, ok := constant(c.Val(dwarf.AttrConstValue)); ok {
				m[n] = v
			}
		}
		if c.Children {
			r.SkipChildren()
		}
	}
}

// EnumValue finds an enumerator by name in any enum.
func (t *DWARFTypes) EnumValue(name string) (int64, error) {
	if err := t.index(); err != nil {
		return 0, err
	}
	v, ok := t.ix.values[name]
	if !ok {
		return 0, fmt.Errorf("%w: enumerator %s", ErrNoType, name)
	}
	return v, nil
}

// Close unmaps the sections; t must not be used afterwards.
func (t *DWARFTypes) Close() error {
	if t.unmap != nil {
		t.unmap()
		t.unmap = nil
	}
	return nil
}

// DWARFTypesFromELF builds a type source from an ELF file's DWARF
// sections, each read after checking its size against limit. A
// relocatable object's (gcc -c) relocations are applied to them.
func DWARFTypesFromELF(name string, f *elf.File, limit uint64) (t *DWARFTypes, err error) {
	defer guard(name, &err)
	if f.ByteOrder != binary.LittleEndian {
		return nil, fmt.Errorf("%s: big-endian DWARF is not supported", name)
	}
	sec := map[string][]byte{}
	for _, n := range dwarfSections {
		s := f.Section(n)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		if s.Size > limit {
			return nil, fmt.Errorf("%s: section %s at offset 0x%x: %d bytes is more than the %d allowed", name, n, s.Offset, s.Size, limit)
		}
		d, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("%s: section %s at offset 0x%x: %w", name, n, s.Offset, err)
		}
		sec[n] = d
	}
	if f.Type == elf.ET_REL {
		if err := relocateDWARF(name, f, sec, limit); err != nil {
			return nil, err
		}
	}
	return NewDWARFTypes(name, sec)
}

// relocateDWARF applies an x86-64 object's RELA relocations to the DWARF
// sections read (section offsets such as DW_FORM_strp are relocated in a
// .o), as the linker would: S + A for R_X86_64_64 and R_X86_64_32.
func relocateDWARF(name string, f *elf.File, sec map[string][]byte, limit uint64) error {
	if f.Machine != elf.EM_X86_64 {
		return nil
	}
	var syms []elf.Symbol
	for _, rs := range f.Sections {
		if rs.Type != elf.SHT_RELA || int(rs.Info) >= len(f.Sections) {
			continue
		}
		dst := sec[f.Sections[rs.Info].Name]
		if dst == nil {
			continue
		}
		if rs.Size > limit || rs.Size%24 != 0 {
			return fmt.Errorf("%s: relocation section %s at offset 0x%x: %d bytes (a multiple of 24, at most %d)", name, rs.Name, rs.Offset, rs.Size, limit)
		}
		rels, err := rs.Data()
		if err != nil {
			return fmt.Errorf("%s: relocation section %s at offset 0x%x: %w", name, rs.Name, rs.Offset, err)
		}
		if syms == nil {
			if syms, err = f.Symbols(); err != nil {
				return fmt.Errorf("%s: symbol table: %w", name, err)
			}
		}
		le := binary.LittleEndian
		for i := 0; i+24 <= len(rels); i += 24 {
			off, info, addend := le.Uint64(rels[i:]), le.Uint64(rels[i+8:]), le.Uint64(rels[i+16:])
			n := info >> 32
			if n == 0 || n > uint64(len(syms)) {
				continue
			}
			s := syms[n-1]
			if s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE {
				continue
			}
			v := s.Value + addend
			switch elf.R_X86_64(info & 0xffffffff) {
			case elf.R_X86_64_64:
				if off <= uint64(len(dst)) && uint64(len(dst))-off >= 8 {
					le.PutUint64(dst[off:], v)
				}
			case elf.R_X86_64_32:
				if off <= uint64(len(dst)) && uint64(len(dst))-off >= 4 {
					le.PutUint32(dst[off:], uint32(v))
				}
			}
		}
	}
	return nil
}

// BitField returns the bit offset and width of a member path; the width
// is 0 for a member that is not a bitfield.
func (t *DWARFTypes) BitField(structName, path string) (uint64, uint64, error) {
	bits, m, err := t.walkMember(structName, path)
	if err != nil {
		return 0, 0, err
	}
	return bits, m.bitSize, nil
}
