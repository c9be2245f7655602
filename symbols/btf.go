package symbols

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// BTF kinds (include/uapi/linux/btf.h).
const (
	BTF_KIND_UNKN       = 0
	BTF_KIND_INT        = 1
	BTF_KIND_PTR        = 2
	BTF_KIND_ARRAY      = 3
	BTF_KIND_STRUCT     = 4
	BTF_KIND_UNION      = 5
	BTF_KIND_ENUM       = 6
	BTF_KIND_FWD        = 7
	BTF_KIND_TYPEDEF    = 8
	BTF_KIND_VOLATILE   = 9
	BTF_KIND_CONST      = 10
	BTF_KIND_RESTRICT   = 11
	BTF_KIND_FUNC       = 12
	BTF_KIND_FUNC_PROTO = 13
	BTF_KIND_VAR        = 14
	BTF_KIND_DATASEC    = 15
	BTF_KIND_FLOAT      = 16
	BTF_KIND_DECL_TAG   = 17
	BTF_KIND_TYPE_TAG   = 18
	BTF_KIND_ENUM64     = 19

	btfMagic      = 0xeb9f
	btfHeaderSize = 24
	btfTypeSize   = 12
)

// ErrNoType is returned for a type or member BTF does not have.
var ErrNoType = errors.New("no such type")

// BTF is parsed BPF Type Format data: enough of it to lay out structs.
type BTF struct {
	types   []btfType // index = type id; 0 is void
	strings []byte
	byName  map[string][]uint32

	enumOnce  sync.Once
	enumIndex map[string]int64

	origin string // where it was read, for messages
}

// SetOrigin names where b was read ("the vmlinux's .BTF", "the dump's
// BTF"), for messages.
func (b *BTF) SetOrigin(s string) { b.origin = s }

type btfType struct {
	name    string
	kind    uint8
	kflag   bool
	vlen    uint16
	sizeOrT uint32 // size for INT/STRUCT/UNION/ENUM, type for PTR/TYPEDEF/...
	members []btfMember
	array   [3]uint32 // elem type, index type, nelems
	enums   []btfEnumValue
	intEnc  uint32       // INT: encoding<<24 | bit offset<<16 | bits
	params  []btfMember  // FUNC_PROTO: name and type (bitOffset unused)
	linkage uint32       // VAR: its linkage word (0 static, 1 global, 2 extern)
	secinfo []btfSecInfo // DATASEC: the variables it places
}

// btfSecInfo is one DATASEC entry: a VAR (by id) at an offset in the
// section.
type btfSecInfo struct {
	typ, offset, size uint32
}

// INT encodings (the top byte of an INT's extra word).
const (
	btfIntSigned = 1
	btfIntChar   = 2
	btfIntBool   = 4
)

type btfEnumValue struct {
	name  string
	value int64
}

type btfMember struct {
	name      string
	typ       uint32
	bitOffset uint32
	bitSize   uint8 // a kflag struct's bitfield size; 0: not a bitfield (or see the INT)
}

// ParseBTF parses raw BTF (the vmlinux .BTF section, or __start_BTF..
// __stop_BTF from a dump). Every count and offset is checked against the
// data before use.
func ParseBTF(data []byte) (*BTF, error) {
	if len(data) < btfHeaderSize {
		return nil, fmt.Errorf("BTF: %d bytes is shorter than its header", len(data))
	}
	le := binary.LittleEndian
	if m := le.Uint16(data); m != btfMagic {
		return nil, fmt.Errorf("BTF: offset 0: magic 0x%x, want 0x%x (big-endian BTF is not supported)", m, btfMagic)
	}
	hdrLen := le.Uint32(data[4:])
	typeOff, typeLen := le.Uint32(data[8:]), le.Uint32(data[12:])
	strOff, strLen := le.Uint32(data[16:]), le.Uint32(data[20:])
	if hdrLen < btfHeaderSize || uint64(hdrLen) > uint64(len(data)) {
		return nil, fmt.Errorf("BTF: offset 4: header length %d", hdrLen)
	}
	body := data[hdrLen:]
	in := func(off, n uint32) bool { return uint64(off)+uint64(n) <= uint64(len(body)) }
	if !in(typeOff, typeLen) || !in(strOff, strLen) {
		return nil, fmt.Errorf("BTF: offset 8: type or string section runs past the end (%d bytes)", len(body))
	}
	// Sums in 64 bits: a section over 4 GiB must not wrap them.
	b := &BTF{strings: body[strOff : uint64(strOff)+uint64(strLen)], types: []btfType{{}}, byName: map[string][]uint32{}}
	ts := body[typeOff : uint64(typeOff)+uint64(typeLen)]
	base := int(uint64(hdrLen) + uint64(typeOff))
	off := 0
	for off < len(ts) {
		if off+btfTypeSize > len(ts) {
			return nil, fmt.Errorf("BTF: offset %d: truncated type", base+off)
		}
		nameOff := le.Uint32(ts[off:])
		info := le.Uint32(ts[off+4:])
		t := btfType{
			kind:    uint8(info >> 24 & 0x1f),
			kflag:   info>>31 != 0,
			vlen:    uint16(info),
			sizeOrT: le.Uint32(ts[off+8:]),
		}
		var err error
		if t.name, err = b.str(nameOff); err != nil {
			return nil, fmt.Errorf("BTF: offset %d: %w", base+off, err)
		}
		at := off
		off += btfTypeSize
		extra := 0
		switch t.kind {
		case BTF_KIND_INT, BTF_KIND_VAR, BTF_KIND_DECL_TAG:
			extra = 4
		case BTF_KIND_ARRAY:
			extra = 12
		case BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_DATASEC, BTF_KIND_ENUM64:
			extra = 12 * int(t.vlen)
		case BTF_KIND_ENUM, BTF_KIND_FUNC_PROTO:
			extra = 8 * int(t.vlen)
		case BTF_KIND_PTR, BTF_KIND_FWD, BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST,
			BTF_KIND_RESTRICT, BTF_KIND_FUNC, BTF_KIND_FLOAT, BTF_KIND_TYPE_TAG:
		default:
			return nil, fmt.Errorf("BTF: offset %d: unknown kind %d", base+at, t.kind)
		}
		if off+extra > len(ts) {
			return nil, fmt.Errorf("BTF: offset %d: type data runs past the type section", base+at)
		}
		switch t.kind {
		case BTF_KIND_ARRAY:
			t.array = [3]uint32{le.Uint32(ts[off:]), le.Uint32(ts[off+4:]), le.Uint32(ts[off+8:])}
		case BTF_KIND_INT:
			t.intEnc = le.Uint32(ts[off:])
		case BTF_KIND_VAR:
			t.linkage = le.Uint32(ts[off:])
		case BTF_KIND_DATASEC:
			t.secinfo = make([]btfSecInfo, t.vlen)
			for i := range t.secinfo {
				m := ts[off+12*i:]
				t.secinfo[i] = btfSecInfo{typ: le.Uint32(m), offset: le.Uint32(m[4:]), size: le.Uint32(m[8:])}
			}
		case BTF_KIND_FUNC_PROTO:
			t.params = make([]btfMember, t.vlen)
			for i := range t.params {
				m := ts[off+8*i:]
				name, err := b.str(le.Uint32(m))
				if err != nil {
					return nil, fmt.Errorf("BTF: offset %d: parameter %d: %w", base+off+8*i, i, err)
				}
				t.params[i] = btfMember{name: name, typ: le.Uint32(m[4:])}
			}
		case BTF_KIND_ENUM, BTF_KIND_ENUM64:
			step := 8
			if t.kind == BTF_KIND_ENUM64 {
				step = 12
			}
			t.enums = make([]btfEnumValue, t.vlen)
			for i := range t.enums {
				m := ts[off+step*i:]
				name, err := b.str(le.Uint32(m))
				if err != nil {
					return nil, fmt.Errorf("BTF: offset %d: enumerator %d: %w", base+off+step*i, i, err)
				}
				v := int64(int32(le.Uint32(m[4:])))
				if t.kind == BTF_KIND_ENUM64 {
					v = int64(uint64(le.Uint32(m[4:])) | uint64(le.Uint32(m[8:]))<<32)
				} else if !t.kflag { // unsigned enum
					v = int64(le.Uint32(m[4:]))
				}
				t.enums[i] = btfEnumValue{name, v}
			}
		case BTF_KIND_STRUCT, BTF_KIND_UNION:
			t.members = make([]btfMember, t.vlen)
			for i := range t.members {
				m := ts[off+12*i:]
				name, err := b.str(le.Uint32(m))
				if err != nil {
					return nil, fmt.Errorf("BTF: offset %d: member %d: %w", base+off+12*i, i, err)
				}
				bo := le.Uint32(m[8:])
				var bs uint8
				if t.kflag {
					bs = uint8(bo >> 24) // high 8 bits are the bitfield size
					bo &= 0xffffff
				}
				t.members[i] = btfMember{name: name, typ: le.Uint32(m[4:]), bitOffset: bo, bitSize: bs}
			}
		}
		off += extra
		id := uint32(len(b.types))
		b.types = append(b.types, t)
		if t.name != "" {
			b.byName[t.name] = append(b.byName[t.name], id)
		}
	}
	return b, nil
}

func (b *BTF) str(off uint32) (string, error) {
	if uint64(off) >= uint64(len(b.strings)) {
		if off == 0 {
			return "", nil
		}
		return "", fmt.Errorf("string offset %d outside the %d-byte string section", off, len(b.strings))
	}
	s := b.strings[off:]
	for i, c := range s {
		if c == 0 {
			return string(s[:i]), nil
		}
	}
	return "", fmt.Errorf("string at %d is not terminated", off)
}

// structID finds a struct or union with a body by name.
func (b *BTF) structID(name string) (uint32, error) {
	for _, id := range b.byName[name] {
		if k := b.types[id].kind; k == BTF_KIND_STRUCT || k == BTF_KIND_UNION {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: struct %s", ErrNoType, name)
}

// resolve skips typedefs and qualifiers, with a bound against loops.
func (b *BTF) resolve(id uint32) (uint32, error) {
	for i := 0; i < 64; i++ {
		if int(id) >= len(b.types) {
			return 0, fmt.Errorf("type id %d out of range", id)
		}
		switch b.types[id].kind {
		case BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG:
			id = b.types[id].sizeOrT
		default:
			return id, nil
		}
	}
	return 0, fmt.Errorf("type id %d: qualifier chain too long", id)
}

// findMember looks name up in struct id, descending into anonymous
// structs and unions; it returns the bit offset from id's start and the
// member's record (its type and bitfield width).
func (b *BTF) findMember(id uint32, name string, depth int) (uint32, btfMember, bool) {
	if depth > 16 {
		return 0, btfMember{}, false
	}
	for _, m := range b.types[id].members {
		if m.name == name {
			return m.bitOffset, m, true
		}
		if m.name == "" {
			inner, err := b.resolve(m.typ)
			if err != nil {
				continue
			}
			if k := b.types[inner].kind; k == BTF_KIND_STRUCT || k == BTF_KIND_UNION {
				if off, found, ok := b.findMember(inner, name, depth+1); ok {
					return m.bitOffset + off, found, true
				}
			}
		}
	}
	return 0, btfMember{}, false
}

// Offset returns the byte offset of a member path such as "thread.sp"
// in struct name.
func (b *BTF) Offset(structName, path string) (uint64, error) {
	id, err := b.structID(structName)
	if err != nil {
		return 0, err
	}
	var bits uint64
	for _, part := range strings.Split(path, ".") {
		cur, err := b.resolve(id)
		if err != nil {
			return 0, err
		}
		if k := b.types[cur].kind; k != BTF_KIND_STRUCT && k != BTF_KIND_UNION {
			return 0, fmt.Errorf("%w: %s.%s: %q is not inside a struct", ErrNoType, structName, path, part)
		}
		off, m, ok := b.findMember(cur, part, 0)
		if !ok {
			return 0, fmt.Errorf("%w: struct %s has no member %s", ErrNoType, structName, path)
		}
		bits += uint64(off)
		id = m.typ
	}
	if bits%8 != 0 {
		return 0, fmt.Errorf("%s.%s is a bitfield", structName, path)
	}
	return bits / 8, nil
}

// Sizeof returns the size in bytes of a struct or union.
func (b *BTF) Sizeof(structName string) (uint64, error) {
	id, err := b.structID(structName)
	if err != nil {
		return 0, err
	}
	return uint64(b.types[id].sizeOrT), nil
}

// Enum returns the enumerators of enum name (by value name).
func (b *BTF) Enum(name string) (map[string]int64, error) {
	for _, id := range b.byName[name] {
		t := b.types[id]
		if t.kind == BTF_KIND_ENUM || t.kind == BTF_KIND_ENUM64 {
			m := make(map[string]int64, len(t.enums))
			for _, e := range t.enums {
				m[e.name] = e.value
			}
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: enum %s", ErrNoType, name)
}

// EnumValue finds an enumerator by its own name in any enum.
func (b *BTF) EnumValue(value string) (int64, error) {
	b.enumOnce.Do(func() {
		b.enumIndex = map[string]int64{}
		for _, t := range b.types {
			for _, e := range t.enums {
				if _, dup := b.enumIndex[e.name]; !dup {
					b.enumIndex[e.name] = e.value
				}
			}
		}
	})
	v, ok := b.enumIndex[value]
	if !ok {
		return 0, fmt.Errorf("%w: enumerator %s", ErrNoType, value)
	}
	return v, nil
}

// ArrayLen returns the element count of an array member (a path as for
// Offset), e.g. xa_node.slots.
func (b *BTF) ArrayLen(structName, path string) (uint64, error) {
	id, err := b.structID(structName)
	if err != nil {
		return 0, err
	}
	parts := strings.Split(path, ".")
	for i, part := range parts {
		cur, err := b.resolve(id)
		if err != nil {
			return 0, err
		}
		_, m, ok := b.findMember(cur, part, 0)
		if !ok {
			return 0, fmt.Errorf("%w: struct %s has no member %s", ErrNoType, structName, path)
		}
		id = m.typ
		if i == len(parts)-1 {
			t, err := b.resolve(id)
			if err != nil {
				return 0, err
			}
			if b.types[t].kind != BTF_KIND_ARRAY {
				return 0, fmt.Errorf("%s.%s is not an array", structName, path)
			}
			return uint64(b.types[t].array[2]), nil
		}
	}
	return 0, fmt.Errorf("%w: empty member path", ErrNoType)
}

// BitField returns the bit offset and width of a member path; the width
// is 0 for a member that is not a bitfield. A kflag struct gives the
// width in the member; an older one in the INT type's encoding.
func (b *BTF) BitField(structName, path string) (uint64, uint64, error) {
	id, err := b.structID(structName)
	if err != nil {
		return 0, 0, err
	}
	var bits uint64
	var m btfMember
	for _, part := range strings.Split(path, ".") {
		cur, err := b.resolve(id)
		if err != nil {
			return 0, 0, err
		}
		if k := b.types[cur].kind; k != BTF_KIND_STRUCT && k != BTF_KIND_UNION {
			return 0, 0, fmt.Errorf("%w: %s.%s: %q is not inside a struct", ErrNoType, structName, path, part)
		}
		off, found, ok := b.findMember(cur, part, 0)
		if !ok {
			return 0, 0, fmt.Errorf("%w: struct %s has no member %s", ErrNoType, structName, path)
		}
		bits += uint64(off)
		id, m = found.typ, found
	}
	width := uint64(m.bitSize)
	if width == 0 {
		if t, err := b.resolve(id); err == nil && b.types[t].kind == BTF_KIND_INT {
			enc := b.types[t].intEnc
			if n := uint64(enc & 0xff); n != 0 && n < 8*uint64(b.types[t].sizeOrT) {
				width = n
				bits += uint64(enc >> 16 & 0xff)
			}
		}
	}
	return bits, width, nil
}
