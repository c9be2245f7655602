package vmcore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
)

// ELF constants, named as in the ELF specification.
const (
	ET_CORE     = 4
	EM_X86_64   = 62
	PT_LOAD     = 1
	PT_NOTE     = 4
	PN_XNUM     = 0xffff
	ELFCLASS64  = 2
	ELFDATA2LSB = 1

	elf64EhdrSize = 64
	elf64PhdrSize = 56
	elf64ShdrSize = 64

	// DUMP_ELF_INCOMPLETE is makedumpfile's e_flags bit for an ELF dump it
	// could not finish.
	DUMP_ELF_INCOMPLETE = 0x1

	maxProgramHeaders = 1 << 20
	maxNoteBytes      = 64 << 20
)

var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// LoadSegment is one PT_LOAD of an ELF vmcore.
type LoadSegment struct {
	Offset int64  // p_offset
	VAddr  uint64 // p_vaddr (0 or = PAddr in QEMU dumps)
	PAddr  uint64 // p_paddr
	FileSz uint64 // p_filesz
	MemSz  uint64 // p_memsz; bytes beyond FileSz read as zeros
}

// elfMemory serves physical reads from an ELF vmcore's PT_LOADs.
type elfMemory struct {
	src       source
	segments  []LoadSegment // as in the file
	phys      []LoadSegment // sorted by PAddr, overlaps removed
	notes     *noteSet
	flags     uint32
	truncated bool // a PT_LOAD or note extends past the end of the file
}

func isELF(head []byte) bool { return bytes.HasPrefix(head, elfMagic) }

func openELF(src source) (*elfMemory, error) {
	name := src.Name()
	var eh [elf64EhdrSize]byte
	if err := readFull(src, eh[:], 0); err != nil {
		return nil, formatErr(name, 0, "ELF header: %v", err)
	}
	if eh[4] != ELFCLASS64 || eh[5] != ELFDATA2LSB {
		return nil, formatErr(name, 4, "ELF class %d data %d: only 64-bit little-endian vmcores are supported", eh[4], eh[5])
	}
	le := binary.LittleEndian
	if t := le.Uint16(eh[16:]); t != ET_CORE {
		return nil, formatErr(name, 16, "ELF type %d is not ET_CORE: not a vmcore", t)
	}
	if m := le.Uint16(eh[18:]); m != EM_X86_64 {
		return nil, formatErr(name, 18, "ELF machine %d is not EM_X86_64", m)
	}
	phoff := le.Uint64(eh[32:])
	shoff := le.Uint64(eh[40:])
	flags := le.Uint32(eh[48:])
	phentsize := le.Uint16(eh[54:])
	phnum := uint64(le.Uint16(eh[56:]))
	if phentsize != elf64PhdrSize {
		return nil, formatErr(name, 54, "e_phentsize %d, want %d", phentsize, elf64PhdrSize)
	}
	if phnum == PN_XNUM {
		// The real count lives in sh_info of section header 0.
		var sh [elf64ShdrSize]byte
		if shoff == 0 || readFull(src, sh[:], int64(shoff)) != nil {
			return nil, formatErr(name, 40, "e_phnum is PN_XNUM but section header 0 at 0x%x cannot be read", shoff)
		}
		phnum = uint64(le.Uint32(sh[44:]))
	}
	if phnum > maxProgramHeaders {
		return nil, formatErr(name, 56, "%d program headers is more than %d", phnum, maxProgramHeaders)
	}
	if phoff > 1<<62 {
		return nil, formatErr(name, 32, "e_phoff 0x%x is beyond any file", phoff)
	}
	// phnum <= 2^20 and phoff <= 2^62: the table's extent cannot overflow.
	ph, err := loadRegion(src, int64(phoff), phnum*elf64PhdrSize, fmt.Sprintf("program header table (%d entries)", phnum), 32)
	if err != nil {
		return nil, err
	}
	m := &elfMemory{src: src, flags: flags}
	var notes []Note
	var noteBytes uint64
	size := uint64(src.Size())
	for i := uint64(0); i < phnum; i++ {
		p := ph[i*elf64PhdrSize:]
		off := int64(phoff + i*elf64PhdrSize)
		typ := le.Uint32(p[0:])
		seg := LoadSegment{
			Offset: int64(le.Uint64(p[8:])),
			VAddr:  le.Uint64(p[16:]),
			PAddr:  le.Uint64(p[24:]),
			FileSz: le.Uint64(p[32:]),
			MemSz:  le.Uint64(p[40:]),
		}
		if seg.Offset < 0 {
			return nil, formatErr(name, off, "program header %d: negative p_offset", i)
		}
		switch typ {
		case PT_LOAD:
			if seg.FileSz > seg.MemSz {
				return nil, formatErr(name, off, "PT_LOAD %d: p_filesz 0x%x > p_memsz 0x%x", i, seg.FileSz, seg.MemSz)
			}
			if seg.PAddr+seg.MemSz < seg.PAddr || seg.PAddr+seg.MemSz > 1<<maxPhysAddrBits {
				return nil, formatErr(name, off, "PT_LOAD %d: physical range 0x%x+0x%x is beyond x86_64's %d-bit physical address space", i, seg.PAddr, seg.MemSz, maxPhysAddrBits)
			}
			if uint64(seg.Offset)+seg.FileSz > size || uint64(seg.Offset)+seg.FileSz < uint64(seg.Offset) {
				m.truncated = true
			}
			m.segments = append(m.segments, seg)
		case PT_NOTE:
			// All PT_NOTEs together are bounded, by the file too: many
			// headers may name one large area.
			if limit := min(maxNoteBytes, uint64(src.stored())); seg.FileSz > limit-noteBytes {
				return nil, formatErr(name, off, "PT_NOTE %d: the PT_NOTEs hold more than %d bytes in all", i, limit)
			}
			noteBytes += seg.FileSz
			buf, err := readRegion(src, seg.Offset, seg.FileSz, maxNoteBytes, fmt.Sprintf("PT_NOTE %d", i), off)
			if err != nil {
				return nil, err
			}
			// Several PT_NOTEs (an unmerged elfcorehdr) are read one by
			// one and classified together.
			ns, err := ParseNotes(name, buf, seg.Offset)
			if err != nil {
				return nil, err
			}
			if len(notes)+len(ns) > maxNotes {
				return nil, formatErr(name, off, "PT_NOTE %d: more than %d ELF notes in all", i, maxNotes)
			}
			notes = append(notes, ns...)
		}
	}
	if m.notes, err = classifyNotes(name, notes); err != nil {
		return nil, err
	}
	if len(m.segments) == 0 {
		return nil, formatErr(name, int64(phoff), "ELF core has no PT_LOAD: no memory in it")
	}
	m.phys = physLayout(m.segments)
	return m, nil
}

// physLayout sorts segments by physical address and clips overlaps. The
// kdump kernel-text PT_LOAD maps the same physical pages as a RAM PT_LOAD;
// either copy is the same memory.
func physLayout(segs []LoadSegment) []LoadSegment {
	s := append([]LoadSegment(nil), segs...)
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].PAddr != s[j].PAddr {
			return s[i].PAddr < s[j].PAddr
		}
		return s[i].MemSz > s[j].MemSz
	})
	out := s[:0]
	var end uint64
	for _, g := range s {
		if g.MemSz == 0 {
			continue
		}
		gEnd := g.PAddr + g.MemSz
		if len(out) > 0 && gEnd <= end {
			continue
		}
		if len(out) > 0 && g.PAddr < end {
			cut := end - g.PAddr
			g.PAddr += cut
			g.VAddr += cut
			g.MemSz -= cut
			if g.FileSz > cut {
				g.FileSz -= cut
				g.Offset += int64(cut)
			} else {
				g.Offset += int64(g.FileSz)
				g.FileSz = 0
			}
		}
		out = append(out, g)
		end = gEnd
	}
	return out
}

// read copies physical memory at addr into dst, which must not cross a
// page boundary of the caller's choosing; it may cross segments.
func (m *elfMemory) read(dst []byte, addr uint64) error {
	for len(dst) > 0 {
		i := sort.Search(len(m.phys), func(i int) bool { return m.phys[i].PAddr+m.phys[i].MemSz > addr })
		if i == len(m.phys) || m.phys[i].PAddr > addr {
			return &PhysError{Addr: addr, File: m.src.Name(), Offset: -1, Err: ErrNotPresent, Detail: "no PT_LOAD covers it"}
		}
		g := m.phys[i]
		rel := addr - g.PAddr
		n := uint64(len(dst))
		if avail := g.MemSz - rel; n > avail {
			n = avail
		}
		chunk := dst[:n]
		if rel >= g.FileSz {
			clear(chunk) // p_memsz beyond p_filesz: zeros by the ELF rules
		} else {
			fileN := n
			if fileN > g.FileSz-rel {
				fileN = g.FileSz - rel
			}
			off := g.Offset + int64(rel)
			if v, ok := m.src.view(off, int(fileN)); ok {
				copy(chunk, v)
			} else if k, _ := m.src.ReadAt(chunk[:fileN], off); uint64(k) != fileN {
				return &PhysError{Addr: addr + uint64(k), File: m.src.Name(), Offset: off + int64(k), Err: ErrIncomplete, Detail: "the file ends before this PT_LOAD does"}
			}
			clear(chunk[fileN:])
		}
		dst = dst[n:]
		addr += n
	}
	return nil
}

// storedBytes is how much of g's file data the file really holds.
func (m *elfMemory) storedBytes(g LoadSegment) uint64 {
	size := uint64(m.src.Size())
	if uint64(g.Offset) >= size {
		return 0
	}
	return min(g.FileSz, size-uint64(g.Offset))
}

func (m *elfMemory) incomplete() bool { return m.truncated || m.flags&DUMP_ELF_INCOMPLETE != 0 }
