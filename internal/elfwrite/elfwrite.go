package elfwrite

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// MaxSize bounds the object Write produces.
const MaxSize = 1 << 30

// maxSize is MaxSize, lowered by tests.
var maxSize uint64 = MaxSize

// ErrTooLarge is returned when the object would exceed MaxSize.
var ErrTooLarge = errors.New("ELF object too large")

// Section is one section of the object. Data is nil for SHT_NOBITS, whose
// Size is then the size of the address range; otherwise Size is ignored
// and the section's size is len(Data). Align 0 is taken as 1.
type Section struct {
	Name  string
	Type  elf.SectionType
	Flags elf.SectionFlag
	Addr  uint64
	Size  uint64
	Data  []byte
	Align uint64
}

// Symbol is one symbol-table entry. Section names the section it is
// defined in; "" is undefined (SHN_UNDEF) and "*ABS*" absolute (SHN_ABS).
type Symbol struct {
	Name        string
	Value, Size uint64
	Type        elf.SymType
	Bind        elf.SymBind
	Section     string
}

const (
	ehdrSize = 64
	shdrSize = 64
	symSize  = 24
)

// strtab is an ELF string table being built; equal strings share an
// offset.
type strtab struct {
	b   []byte
	off map[string]uint32
}

func newStrtab() *strtab { return &strtab{b: []byte{0}, off: map[string]uint32{"": 0}} }

func (s *strtab) add(name string) uint32 {
	if o, ok := s.off[name]; ok {
		return o
	}
	o := uint32(len(s.b))
	s.b = append(append(s.b, name...), 0)
	s.off[name] = o
	return o
}

// Write lays out the object: the ELF header, the sections' data in the
// order given (each aligned), then .symtab, .strtab and .shstrtab, then
// the section header table. Section header 0 is the null section; the
// given sections follow as 1..n, then .symtab, .strtab, .shstrtab. Local
// symbols come first in .symtab (after the null symbol), in the order
// given, then the others in the order given; .symtab's sh_info is the
// index of the first non-local symbol.
func Write(sections []Section, syms []Symbol) ([]byte, error) {
	if len(sections)+4 >= int(elf.SHN_LORESERVE) {
		return nil, fmt.Errorf("elfwrite: %d sections", len(sections))
	}
	index := map[string]uint16{}
	for i, s := range sections {
		if s.Name == "" || strings.IndexByte(s.Name, 0) >= 0 {
			return nil, fmt.Errorf("elfwrite: section %d: bad name %q", i, s.Name)
		}
		switch s.Name {
		case ".symtab", ".strtab", ".shstrtab":
			return nil, fmt.Errorf("elfwrite: section %s is written by elfwrite itself", s.Name)
		}
		if _, dup := index[s.Name]; dup {
			return nil, fmt.Errorf("elfwrite: two sections named %s", s.Name)
		}
		if s.Align&(s.Align-1) != 0 {
			return nil, fmt.Errorf("elfwrite: section %s: alignment %d is not a power of two", s.Name, s.Align)
		}
		if s.Type == elf.SHT_NOBITS && s.Data != nil {
			return nil, fmt.Errorf("elfwrite: section %s: SHT_NOBITS with data", s.Name)
		}
		index[s.Name] = uint16(i + 1)
	}
	if uint64(len(syms)) > maxSize/symSize {
		return nil, fmt.Errorf("%w: %d symbols", ErrTooLarge, len(syms))
	}

	le := binary.LittleEndian
	strs := newStrtab()
	symtab := make([]byte, symSize, symSize*(len(syms)+1)) // the null symbol
	putSym := func(s Symbol) error {
		if strings.IndexByte(s.Name, 0) >= 0 {
			return fmt.Errorf("elfwrite: symbol %q: NUL in name", s.Name)
		}
		var shndx uint16
		switch s.Section {
		case "":
			shndx = uint16(elf.SHN_UNDEF)
		case "*ABS*":
			shndx = uint16(elf.SHN_ABS)
		default:
			i, ok := index[s.Section]
			if !ok {
				return fmt.Errorf("elfwrite: symbol %s: no section %s", s.Name, s.Section)
			}
			shndx = i
		}
		var e [symSize]byte
		le.PutUint32(e[0:], strs.add(s.Name))
		e[4] = elf.ST_INFO(s.Bind, s.Type)
		le.PutUint16(e[6:], shndx)
		le.PutUint64(e[8:], s.Value)
		le.PutUint64(e[16:], s.Size)
		symtab = append(symtab, e[:]...)
		return nil
	}
	for _, s := range syms {
		if s.Bind == elf.STB_LOCAL {
			if err := putSym(s); err != nil {
				return nil, err
			}
		}
	}
	firstGlobal := uint32(len(symtab) / symSize)
	for _, s := range syms {
		if s.Bind != elf.STB_LOCAL {
			if err := putSym(s); err != nil {
				return nil, err
			}
		}
	}
	if uint64(len(strs.b)) > maxSize {
		return nil, fmt.Errorf("%w: string table of %d bytes", ErrTooLarge, len(strs.b))
	}

	type hdr struct {
		name            uint32
		typ             elf.SectionType
		flags           elf.SectionFlag
		addr, off, size uint64
		link, info      uint32
		align, entsize  uint64
		data            []byte
	}
	shstr := newStrtab()
	all := []hdr{{}}
	for _, s := range sections {
		h := hdr{name: shstr.add(s.Name), typ: s.Type, flags: s.Flags, addr: s.Addr, align: s.Align, data: s.Data}
		if h.align == 0 {
			h.align = 1
		}
		if s.Type == elf.SHT_NOBITS {
			h.size = s.Size
		} else {
			h.size = uint64(len(s.Data))
		}
		all = append(all, h)
	}
	nSym := uint32(len(all))
	all = append(all, hdr{name: shstr.add(".symtab"), typ: elf.SHT_SYMTAB, size: uint64(len(symtab)),
		link: nSym + 1, info: firstGlobal, align: 8, entsize: symSize, data: symtab})
	all = append(all, hdr{name: shstr.add(".strtab"), typ: elf.SHT_STRTAB, size: uint64(len(strs.b)), align: 1, data: strs.b})
	shstrName := shstr.add(".shstrtab")
	all = append(all, hdr{name: shstrName, typ: elf.SHT_STRTAB, align: 1, data: shstr.b})
	all[len(all)-1].size = uint64(len(shstr.b))

	// Lay out the file; sizes are summed in 64 bits against MaxSize.
	off := uint64(ehdrSize)
	for i := 1; i < len(all); i++ {
		h := &all[i]
		if h.typ == elf.SHT_NOBITS {
			h.off = off
			continue
		}
		off = (off + h.align - 1) &^ (h.align - 1)
		h.off = off
		off += h.size
		if off > maxSize {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxSize)
		}
	}
	shoff := (off + 7) &^ 7
	total := shoff + uint64(len(all))*shdrSize
	if total > maxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, total)
	}

	out := make([]byte, total)
	copy(out, elf.ELFMAG)
	out[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	out[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	out[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	out[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	// e_entry 0, e_phoff 0 (no program headers)
	le.PutUint64(out[40:], shoff)
	le.PutUint16(out[52:], ehdrSize)
	le.PutUint16(out[54:], 56) // e_phentsize, though e_phnum is 0
	le.PutUint16(out[58:], shdrSize)
	le.PutUint16(out[60:], uint16(len(all)))
	le.PutUint16(out[62:], uint16(len(all)-1)) // .shstrtab is last
	for i, h := range all {
		if h.typ != elf.SHT_NOBITS {
			copy(out[h.off:], h.data)
		}
		if i == 0 {
			continue
		}
		sh := out[shoff+uint64(i)*shdrSize:]
		le.PutUint32(sh[0:], h.name)
		le.PutUint32(sh[4:], uint32(h.typ))
		le.PutUint64(sh[8:], uint64(h.flags))
		le.PutUint64(sh[16:], h.addr)
		le.PutUint64(sh[24:], h.off)
		le.PutUint64(sh[32:], h.size)
		le.PutUint32(sh[40:], h.link)
		le.PutUint32(sh[44:], h.info)
		le.PutUint64(sh[48:], h.align)
		le.PutUint64(sh[56:], h.entsize)
	}
	return out, nil
}
