package gdbfiles

import (
	"debug/elf"
	"fmt"
	"io"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbstub"
)

// Patch is a replacement of the bytes at Off of a served file.
type Patch struct {
	Off  int64
	Data []byte
}

// PerCPUView returns the patches that make gdb keep a vmlinux's
// zero-based per-CPU section (x86-64 links .data..percpu at address 0,
// in a PT_LOAD of its own, so that &var + __per_cpu_offset[cpu] is the
// variable of that CPU) at its link address when it relocates the vmlinux
// by the qOffsets answer, whatever the KASLR offset.
//
// gdb relocates a main executable by segments: the TextSeg base moves its
// first PT_LOAD and the DataSeg base every later one, the per-CPU segment
// included (gdb/symfile.c symfile_map_offsets_to_segments), so no qOffsets
// answer keeps that segment in place. A section in no PT_LOAD is not
// moved at all (gdb/elfread.c elf_symfile_segments, segment 0): the
// patches turn the zero-based PT_LOAD into PT_NULL and its sections into
// SHT_NOBITS, which gdb would otherwise warn about as a loadable section
// outside of ELF segments. gdb reads no memory from them (the target has
// it all). Every other byte of the file, the build id and the debug
// information included, is unchanged, so the view still validates
// against a local copy of the vmlinux.
//
// A file without such a segment (another architecture, a kernel without
// zero-based per-CPU data, any other ELF file) gets no patches.
func PerCPUView(r io.ReaderAt) ([]Patch, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	if f.Type != elf.ET_EXEC {
		return nil, nil
	}
	var hdr [0x40]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("ELF header: %w", err)
	}
	bo := f.ByteOrder
	var phoff, shoff uint64
	var phentsize, shentsize uint16
	switch f.Class {
	case elf.ELFCLASS64:
		phoff, shoff = bo.Uint64(hdr[0x20:]), bo.Uint64(hdr[0x28:])
		phentsize, shentsize = bo.Uint16(hdr[0x36:]), bo.Uint16(hdr[0x3a:])
	case elf.ELFCLASS32:
		phoff, shoff = uint64(bo.Uint32(hdr[0x1c:])), uint64(bo.Uint32(hdr[0x20:]))
		phentsize, shentsize = bo.Uint16(hdr[0x2a:]), bo.Uint16(hdr[0x2e:])
	default:
		return nil, nil
	}
	// The type fields: p_type first in a program header, sh_type second
	// (after sh_name) in a section header, 4 bytes in either class.
	word := func(off uint64, v uint32) Patch {
		b := make([]byte, 4)
		bo.PutUint32(b, v)
		return Patch{Off: int64(off), Data: b}
	}
	var patches []Patch
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Vaddr != 0 || p.Memsz == 0 {
			continue
		}
		var secs []Patch
		percpu := false
		for j, s := range f.Sections {
			if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Size == 0 {
				continue
			}
			if s.Addr >= p.Memsz || s.Size > p.Memsz-s.Addr ||
				s.Offset < p.Off || s.Offset-p.Off >= p.Filesz || s.Size > p.Filesz-(s.Offset-p.Off) {
				continue
			}
			percpu = percpu || (s.Name == ".data..percpu" && s.Addr == 0)
			secs = append(secs, word(shoff+uint64(j)*uint64(shentsize)+4, uint32(elf.SHT_NOBITS)))
		}
		if !percpu {
			continue
		}
		patches = append(patches, word(phoff+uint64(i)*uint64(phentsize), uint32(elf.PT_NULL)))
		patches = append(patches, secs...)
	}
	return patches, nil
}

// Patched serves f with the patches applied: reads see the patched bytes,
// the size and everything else are f's.
func Patched(f gdbstub.File, patches []Patch) gdbstub.File {
	if len(patches) == 0 {
		return f
	}
	return &patchedFile{File: f, patches: patches}
}

type patchedFile struct {
	gdbstub.File
	patches []Patch
}

func (p *patchedFile) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.File.ReadAt(b, off)
	for _, pt := range p.patches {
		lo, hi := max(pt.Off, off), min(pt.Off+int64(len(pt.Data)), off+int64(n))
		if lo < hi {
			copy(b[lo-off:hi-off], pt.Data[lo-pt.Off:])
		}
	}
	return n, err
}
