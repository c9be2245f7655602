package symbols

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"runtime"
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
// every compilation unit, skipping children by DW_AT_sibling; members are
// read from the DIEs when a struct is first asked about, then cached.
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
	data  *dwarf.Data
	info  []byte // .debug_info, to split the index pass by unit
	unmap func()

	once    sync.Once
	idxErr  error
	structs map[string]dwarf.Offset // struct, union (and typedef to one)
	enums   map[string]dwarf.Offset
	typedef map[string]dwarf.Offset
	values  map[string]int64 // enumerator -> value

	mu      sync.Mutex
	members map[dwarf.Offset]*dwarfStruct
}

type dwarfStruct struct {
	size    uint64
	members []dwarfMember
}

type dwarfMember struct {
	name   string
	typ    dwarf.Offset
	bitOff uint64
}

// Sections a DWARFTypes reads; everything else (.debug_line, location
// lists, ranges) is never touched.
var dwarfSections = []string{".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str", ".debug_str_offsets", ".debug_addr"}

// NewDWARFTypes builds a type source from raw DWARF sections (by ELF
// name; .debug_info and .debug_abbrev are required). name is used in
// errors.
func NewDWARFTypes(name string, sec map[string][]byte) (t *DWARFTypes, err error) {
	if len(sec[".debug_info"]) == 0 || len(sec[".debug_abbrev"]) == 0 {
		return nil, fmt.Errorf("%s: %w: no DWARF (.debug_info, .debug_abbrev)", name, ErrNoType)
	}
	defer guard(name, &err)
	d, err := dwarf.New(sec[".debug_abbrev"], nil, nil, sec[".debug_info"], nil, nil, nil, sec[".debug_str"])
	if err != nil {
		return nil, fmt.Errorf("%s: DWARF: %w", name, err)
	}
	for _, s := range dwarfSections[3:] {
		if len(sec[s]) > 0 {
			if err := d.AddSection(s, sec[s]); err != nil {
				return nil, fmt.Errorf("%s: DWARF %s: %w", name, s, err)
			}
		}
	}
	return &DWARFTypes{path: name, data: d, info: sec[".debug_info"], members: map[dwarf.Offset]*dwarfStruct{}}, nil
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

// unitStarts returns the offsets of the first DIE of every unit in
// .debug_info, read from the unit headers (debug/dwarf seeks to DIEs, not
// headers), so the index pass can be split between workers.
func unitStarts(info []byte) []dwarf.Offset {
	var out []dwarf.Offset
	le := binary.LittleEndian
	for off := uint64(0); off+4 <= uint64(len(info)); {
		n := uint64(le.Uint32(info[off:]))
		hdr, word := uint64(4), uint64(4)
		if n == 0xffffffff {
			if off+12 > uint64(len(info)) {
				break
			}
			n, hdr, word = le.Uint64(info[off+4:]), 12, 8
		}
		if n < 2 || n > uint64(len(info))-off-hdr {
			break
		}
		// version, then (v5) unit type, address size, abbrev offset and
		// per type extras; (v2-4) abbrev offset, address size.
		die := off + hdr + 2 + word + 1
		if v := le.Uint16(info[off+hdr:]); v >= 5 {
			die++
			switch info[off+hdr+2] {
			case 2, 6: // DW_UT_type, DW_UT_split_type
				die += 8 + word
			case 4, 5: // DW_UT_skeleton, DW_UT_split_compile
				die += 8
			}
		}
		if die < off+hdr+n {
			out = append(out, dwarf.Offset(die))
		}
		off += hdr + n
	}
	return out
}

// dwarfIndex is one worker's share of the name index, first
// definitions in unit order.
type dwarfIndex struct {
	structs, empty, enums, typedef map[string]dwarf.Offset
	values                         map[string]int64
	err                            error
}

func (t *DWARFTypes) index() error {
	t.once.Do(func() {
		starts := unitStarts(t.info)
		workers := min(runtime.GOMAXPROCS(0), 4, max(len(starts), 1))
		parts := make([]dwarfIndex, workers)
		var wg sync.WaitGroup
		for w := range parts {
			lo, hi := len(starts)*w/workers, len(starts)*(w+1)/workers
			begin, end := dwarf.Offset(0), dwarf.Offset(0)
			if lo < hi {
				begin, end = starts[lo], dwarf.Offset(len(t.info))
			}
			if hi < len(starts) {
				end = starts[hi]
			}
			wg.Add(1)
			go func(p *dwarfIndex) {
				defer wg.Done()
				*p = t.indexRange(begin, end)
			}(&parts[w])
		}
		wg.Wait()
		t.structs, t.enums, t.typedef, t.values = map[string]dwarf.Offset{}, map[string]dwarf.Offset{}, map[string]dwarf.Offset{}, map[string]int64{}
		empty := map[string]dwarf.Offset{}
		for _, p := range parts {
			if p.err != nil && t.idxErr == nil {
				t.idxErr = p.err
			}
			merge(t.structs, p.structs)
			merge(empty, p.empty)
			merge(t.enums, p.enums)
			merge(t.typedef, p.typedef)
			for k, v := range p.values {
				if _, ok := t.values[k]; !ok {
					t.values[k] = v
				}
			}
		}
		for k, v := range empty {
			if _, ok := t.structs[k]; !ok {
				t.structs[k] = v
			}
		}
	})
	return t.idxErr
}

func merge(dst, src map[string]dwarf.Offset) {
	for k, v := range src {
		if _, ok := dst[k]; !ok {
			dst[k] = v
		}
	}
}

// indexRange indexes the units starting in [begin, end).
func (t *DWARFTypes) indexRange(begin, end dwarf.Offset) (p dwarfIndex) {
	p = dwarfIndex{structs: map[string]dwarf.Offset{}, empty: map[string]dwarf.Offset{}, enums: map[string]dwarf.Offset{},
		typedef: map[string]dwarf.Offset{}, values: map[string]int64{}}
	defer guard(t.path, &p.err)
	if begin >= end {
		return p
	}
	r := t.data.Reader()
	r.Seek(begin)
	for {
		cu, err := r.Next()
		if err != nil {
			p.err = fmt.Errorf("%s: .debug_info: %w", t.path, err)
			return p
		}
		if cu == nil || cu.Offset >= end {
			return p
		}
		if !cu.Children {
			continue
		}
		for {
			e, err := r.Next()
			if err != nil {
				p.err = fmt.Errorf("%s: .debug_info at 0x%x: %w", t.path, cu.Offset, err)
				return p
			}
			if e == nil || e.Tag == 0 {
				break
			}
			name, _ := e.Val(dwarf.AttrName).(string)
			decl, _ := e.Val(dwarf.AttrDeclaration).(bool)
			switch {
			case decl:
			case e.Tag == dwarf.TagStructType || e.Tag == dwarf.TagUnionType:
				if name == "" {
					break
				}
				if _, ok := p.structs[name]; !ok && e.Children {
					p.structs[name] = e.Offset
				} else if _, ok := p.empty[name]; !ok && !e.Children {
					p.empty[name] = e.Offset
				}
			case e.Tag == dwarf.TagTypedef:
				if _, ok := p.typedef[name]; !ok && name != "" {
					p.typedef[name] = e.Offset
				}
			case e.Tag == dwarf.TagEnumerationType && e.Children:
				if _, seen := p.enums[name]; seen && name != "" {
					break // the same enum from another unit
				}
				if name != "" {
					p.enums[name] = e.Offset
				}
				// Enumerators are the enum's children: read, not skipped.
				for {
					c, err := r.Next()
					if err != nil {
						p.err = fmt.Errorf("%s: .debug_info at 0x%x: %w", t.path, e.Offset, err)
						return p
					}
					if c == nil || c.Tag == 0 {
						break
					}
					if c.Tag == dwarf.TagEnumerator {
						n, _ := c.Val(dwarf.AttrName).(string)
						if v, ok := constant(c.Val(dwarf.AttrConstValue)); ok && n != "" {
							if _, dup := p.values[n]; !dup {
								p.values[n] = v
							}
						}
					}
					if c.Children {
						r.SkipChildren()
					}
				}
				continue
			}
			if e.Children {
				r.SkipChildren()
			}
		}
	}
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
func (t *DWARFTypes) entry(r *dwarf.Reader, off dwarf.Offset) (*dwarf.Entry, error) {
	r.Seek(off)
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
func (t *DWARFTypes) resolve(r *dwarf.Reader, off dwarf.Offset) (*dwarf.Entry, error) {
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
func (t *DWARFTypes) layout(r *dwarf.Reader, e *dwarf.Entry) (*dwarfStruct, error) {
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
func (t *DWARFTypes) findMember(r *dwarf.Reader, s *dwarfStruct, name string, depth int) (uint64, dwarf.Offset, bool, error) {
	if depth > 16 {
		return 0, 0, false, nil
	}
	for _, m := range s.members {
		if m.name == name {
			return m.bitOff, m.typ, true, nil
		}
		if m.name != "" || m.typ == 0 {
			continue
		}
		e, err := t.resolve(r, m.typ)
		if err != nil {
			return 0, 0, false, err
		}
		if !isAggregate(e) {
			continue
		}
		inner, err := t.layout(r, e)
		if err != nil {
			return 0, 0, false, err
		}
		if off, typ, ok, err := t.findMember(r, inner, name, depth+1); ok || err != nil {
			return m.bitOff + off, typ, ok, err
		}
	}
	return 0, 0, false, nil
}

// lookupStruct finds a struct or union by name (or a typedef naming one,
// as `typedef struct {...} name` does).
func (t *DWARFTypes) lookupStruct(r *dwarf.Reader, name string) (*dwarf.Entry, error) {
	if err := t.index(); err != nil {
		return nil, err
	}
	off, ok := t.structs[name]
	if !ok {
		td, ok := t.typedef[name]
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
	defer guard(t.path, &err)
	r := t.data.Reader()
	e, err := t.lookupStruct(r, structName)
	if err != nil {
		return 0, 0, err
	}
	for _, part := range strings.Split(path, ".") {
		if !isAggregate(e) {
			return 0, 0, fmt.Errorf("%w: %s.%s: %q is not inside a struct", ErrNoType, structName, path, part)
		}
		s, err := t.layout(r, e)
		if err != nil {
			return 0, 0, err
		}
		off, mt, ok, err := t.findMember(r, s, part, 0)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("%w: struct %s has no member %s", ErrNoType, structName, path)
		}
		bits += off
		typ = mt
		if typ == 0 {
			return 0, 0, fmt.Errorf("%s: struct %s member %s has no type", t.path, structName, path)
		}
		if e, err = t.resolve(r, typ); err != nil {
			return 0, 0, err
		}
	}
	return bits, typ, nil
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
	e, err := t.lookupStruct(t.data.Reader(), structName)
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
	r := t.data.Reader()
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
	off, ok := t.enums[name]
	if !ok {
		return nil, fmt.Errorf("%w: enum %s", ErrNoType, name)
	}
	defer guard(t.path, &err)
	r := t.data.Reader()
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
	v, ok := t.values[name]
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
// relocatable object (gcc -c) has its relocations applied by debug/elf.
func DWARFTypesFromELF(name string, f *elf.File, limit uint64) (t *DWARFTypes, err error) {
	defer guard(name, &err)
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
	t, err = NewDWARFTypes(name, sec)
	if err != nil || f.Type != elf.ET_REL {
		return t, err
	}
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("%s: DWARF: %w", name, err)
	}
	t.data = d
	return t, nil
}
