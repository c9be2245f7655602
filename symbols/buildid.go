package symbols

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// ErrNoBuildID reports an ELF file without a GNU build id note.
var ErrNoBuildID = errors.New("no GNU build id note")

// NT_GNU_BUILD_ID is the note type of a build id (in the "GNU" namespace).
const NT_GNU_BUILD_ID = 3

// maxBuildIDBytes bounds a build id: GNU ld writes 20 (sha1) or 16 (md5)
// bytes, and debuginfod accepts hex ids of at most 256 digits.
const maxBuildIDBytes = 128

// GNUBuildID finds the NT_GNU_BUILD_ID note in the contents of an ELF note
// section or segment (little-endian, 4-byte aligned) and returns its
// descriptor as lower-case hex.
func GNUBuildID(notes []byte) (string, bool) {
	for len(notes) >= 12 {
		namesz := uint64(binary.LittleEndian.Uint32(notes[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(notes[4:]))
		typ := binary.LittleEndian.Uint32(notes[8:])
		nameEnd := 12 + (namesz+3)&^3
		descEnd := nameEnd + (descsz+3)&^3
		if descEnd > uint64(len(notes)) {
			return "", false
		}
		if typ == NT_GNU_BUILD_ID && namesz == 4 && string(notes[12:16]) == "GNU\x00" &&
			descsz > 0 && descsz <= maxBuildIDBytes {
			return hex.EncodeToString(notes[nameEnd : nameEnd+descsz]), true
		}
		notes = notes[descEnd:]
	}
	return "", false
}

// ELFBuildID returns the GNU build id of the ELF file r, from its SHT_NOTE
// sections (or, in a file without section headers, its PT_NOTE segments).
func ELFBuildID(r io.ReaderAt) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", err
	}
	check := func(off, size uint64) (string, bool, error) {
		if size > maxNoteSectionBytes {
			return "", false, nil
		}
		buf := make([]byte, size)
		if _, err := r.ReadAt(buf, int64(off)); err != nil {
			return "", false, fmt.Errorf("note at offset %#x: %w", off, err)
		}
		id, ok := GNUBuildID(buf)
		return id, ok, nil
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		if id, ok, err := check(s.Offset, s.Size); err != nil || ok {
			return id, err
		}
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		if id, ok, err := check(p.Off, p.Filesz); err != nil || ok {
			return id, err
		}
	}
	return "", ErrNoBuildID
}
