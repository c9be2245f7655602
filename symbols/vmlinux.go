package symbols

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
)

// ErrNoSymbol is returned for a name the symbol table does not have.
var ErrNoSymbol = errors.New("no such symbol")

// Vmlinux is an opened kernel image (the debug vmlinux, or any ELF build
// of it with a symbol table).
type Vmlinux struct {
	path    string
	file    *os.File
	size    int64 // of the file, bounding every section read from it
	elf     *elf.File
	syms    map[string]elf.Symbol
	btf     *BTF
	btfErr  error
	btfOnce sync.Once

	lines lineData

	dwarf     *DWARFTypes
	dwarfErr  error
	dwarfOnce sync.Once

	sortOnce sync.Once
	symtab   []elf.Symbol // in file order, until sorted is built
	sorted   []elf.Symbol
}

// Open opens a vmlinux read-only and loads its symbol table. Only a regular
// file or a block device is opened (a FIFO would block forever).
func Open(path string) (*Vmlinux, error) {
	f, size, err := rofile.Open(path)
	if err != nil {
		return nil, err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a vmlinux (an ELF kernel image): %w", path, err)
	}
	if ef.Type != elf.ET_EXEC {
		f.Close()
		return nil, fmt.Errorf("%s: ELF type %v, not a vmlinux (ET_EXEC); is it the dump?", path, ef.Type)
	}
	if ef.Machine != elf.EM_X86_64 || ef.Class != elf.ELFCLASS64 {
		f.Close()
		return nil, fmt.Errorf("%s: not an x86_64 kernel (machine %v, class %v)", path, ef.Machine, ef.Class)
	}
	syms, err := ef.Symbols()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: symbol table: %w", path, err)
	}
	v := &Vmlinux{path: path, file: f, size: size, elf: ef, syms: make(map[string]elf.Symbol, len(syms)), symtab: syms}
	for _, s := range syms {
		if s.Name == "" || elf.ST_TYPE(s.Info) == elf.STT_FILE || elf.ST_TYPE(s.Info) == elf.STT_SECTION {
			continue
		}
		// Keep the first global definition over local duplicates.
		if old, ok := v.syms[s.Name]; ok && elf.ST_BIND(old.Info) == elf.STB_GLOBAL {
			continue
		}
		v.syms[s.Name] = s
	}
	return v, nil
}

// Close releases the file.
func (v *Vmlinux) Close() error {
	if v.dwarf != nil {
		v.dwarf.Close()
	}
	return v.file.Close()
}

// Path returns the file name.
func (v *Vmlinux) Path() string { return v.path }

// Symbol returns a symbol's link-time address and size.
func (v *Vmlinux) Symbol(name string) (addr, size uint64, err error) {
	s, ok := v.syms[name]
	if !ok {
		return 0, 0, fmt.Errorf("%s: %w: %s", v.path, ErrNoSymbol, name)
	}
	return s.Value, s.Size, nil
}

// Address returns a symbol's run-time address under a KASLR offset
// (VMCOREINFO KERNELOFFSET). Per-CPU symbols are offsets, not addresses,
// and are returned unshifted.
func (v *Vmlinux) Address(name string, kaslrOffset uint64) (uint64, error) {
	s, ok := v.syms[name]
	if !ok {
		return 0, fmt.Errorf("%s: %w: %s", v.path, ErrNoSymbol, name)
	}
	if int(s.Section) < len(v.elf.Sections) && s.Section != elf.SHN_ABS && s.Section != elf.SHN_UNDEF {
		if v.elf.Sections[s.Section].Name == ".data..percpu" {
			return s.Value, nil
		}
	}
	return s.Value + kaslrOffset, nil
}

// BTF returns the kernel's type information from the .BTF section.
func (v *Vmlinux) BTF() (*BTF, error) {
	v.btfOnce.Do(func() { v.btf, v.btfErr = v.loadBTF() })
	return v.btf, v.btfErr
}

func (v *Vmlinux) loadBTF() (*BTF, error) {
	sec := v.elf.Section(".BTF")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF)", v.path)
	}
	data, err := v.sectionData(sec, maxBTFBytes)
	if err != nil {
		return nil, err
	}
	b, err := ParseBTF(data)
	if err != nil {
		return nil, fmt.Errorf("%s: .BTF section at offset 0x%x: %w", v.path, sec.Offset, err)
	}
	b.SetOrigin("BTF (" + v.path + ")")
	return b, nil
}

// Bounds on what one section may make us read: a kernel's .BTF is a few
// MB (kernel/ accepts 256 MiB from a dump), its note sections a few KB,
// its largest section (.debug_info) a few hundred MB.
const (
	maxBTFBytes         = 256 << 20
	maxNoteSectionBytes = 1 << 20
	maxSectionBytes     = 2 << 30
)

// sectionData reads a section after checking the sizes its header gives:
// the stored bytes must lie inside the file, and the size (decompressed,
// for an SHF_COMPRESSED section) must be at most limit.
func (v *Vmlinux) sectionData(s *elf.Section, limit uint64) ([]byte, error) {
	if err := v.checkSection(s, limit); err != nil {
		return nil, err
	}
	d, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: section %s at offset 0x%x: %w", v.path, s.Name, s.Offset, err)
	}
	return d, nil
}

// checkSection checks the sizes a section header gives before the
// section is read (sectionData's rules).
func (v *Vmlinux) checkSection(s *elf.Section, limit uint64) error {
	if s.Type == elf.SHT_NOBITS {
		return fmt.Errorf("%s: %s has no file data", v.path, s.Name)
	}
	if s.Offset > uint64(v.size) || s.FileSize > uint64(v.size)-s.Offset {
		return fmt.Errorf("%s: section %s at offset 0x%x (%d bytes) runs past the end of the file (%d bytes)", v.path, s.Name, s.Offset, s.FileSize, v.size)
	}
	if s.Size > limit {
		return fmt.Errorf("%s: section %s at offset 0x%x: %d bytes is more than the %d allowed", v.path, s.Name, s.Offset, s.Size, limit)
	}
	return nil
}

// Segment is one PT_LOAD of the vmlinux.
type Segment struct {
	VAddr, MemSz uint64
}

// LoadSegments returns the vmlinux's PT_LOADs in file order (text, data,
// per-CPU at address 0 on x86_64, init...).
func (v *Vmlinux) LoadSegments() []Segment {
	var out []Segment
	for _, p := range v.elf.Progs {
		if p.Type == elf.PT_LOAD {
			out = append(out, Segment{VAddr: p.Vaddr, MemSz: p.Memsz})
		}
	}
	return out
}

// BuildID returns the GNU build id note, hex, if present.
func (v *Vmlinux) BuildID() string {
	for _, s := range v.elf.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		data, err := v.sectionData(s, maxNoteSectionBytes)
		if err != nil {
			continue
		}
		if id, ok := GNUBuildID(data); ok {
			return id
		}
	}
	return ""
}

// SymbolAt names the symbol whose link-time range holds addr, as name and
// offset; ok is false when none does. Functions and objects with a size
// win; otherwise the nearest preceding label (entry code's asm symbols
// have no size) within 64 KiB. Of several symbols at one address
// (__x64_sys_pause, __ia32_sys_pause and __do_sys_pause share one) the
// choice is the same every run: global before weak before local, then
// the first in the symbol table, which names what the kernel's own
// traces print.
func (v *Vmlinux) SymbolAt(addr uint64) (name string, off uint64, ok bool) {
	s, ok := v.symbolAt(addr)
	if !ok {
		return "", 0, false
	}
	return s.Name, addr - s.Value, true
}

// UnsizedData says the symbol SymbolAt names addr by has no size and is
// not in code (an assembler label in .data, such as init_top_pgt): gdb's
// print symbol does not name a pointer by such a symbol, and neither do
// values printed as crash prints them.
func (v *Vmlinux) UnsizedData(addr uint64) bool {
	s, ok := v.symbolAt(addr)
	if !ok || s.Size > 0 {
		return false
	}
	return int(s.Section) >= len(v.elf.Sections) || v.elf.Sections[s.Section].Flags&elf.SHF_EXECINSTR == 0
}

func (v *Vmlinux) symbolAt(addr uint64) (elf.Symbol, bool) {
	v.sortOnce.Do(v.sortSymbols)
	i := sort.Search(len(v.sorted), func(i int) bool { return v.sorted[i].Value > addr }) - 1
	// A sized symbol containing addr, among the few addresses just below.
	for j, n := i, 0; j >= 0 && n < 8; n++ {
		g := v.aliasStart(j)
		for k := g; k <= j; k++ {
			if s := v.sorted[k]; s.Size > 0 && addr-s.Value < s.Size {
				return s, true
			}
		}
		j = g - 1
	}
	if i >= 0 {
		for k := v.aliasStart(i); k <= i; k++ {
			if s := v.sorted[k]; s.Size == 0 && addr-s.Value < 1<<16 {
				return s, true
			}
		}
	}
	return elf.Symbol{}, false
}

// aliasStart returns the first index of the symbols at sorted[i]'s address.
func (v *Vmlinux) aliasStart(i int) int {
	for i > 0 && v.sorted[i-1].Value == v.sorted[i].Value {
		i--
	}
	return i
}

func bindRank(s elf.Symbol) int {
	switch elf.ST_BIND(s.Info) {
	case elf.STB_GLOBAL:
		return 0
	case elf.STB_WEAK:
		return 1
	}
	return 2
}

func (v *Vmlinux) sortSymbols() {
	for _, s := range v.symtab {
		t := elf.ST_TYPE(s.Info)
		if (t == elf.STT_FUNC || t == elf.STT_OBJECT || t == elf.STT_NOTYPE) && s.Value != 0 && s.Name != "" &&
			int(s.Section) < len(v.elf.Sections) && s.Section != elf.SHN_UNDEF && s.Section != elf.SHN_ABS &&
			v.elf.Sections[s.Section].Flags&elf.SHF_ALLOC != 0 && !strings.HasPrefix(s.Name, "__pfx_") {
			v.sorted = append(v.sorted, s)
		}
	}
	v.symtab = nil
	// Stable: among equals the symbol table's order decides.
	sort.SliceStable(v.sorted, func(i, j int) bool {
		a, b := v.sorted[i], v.sorted[j]
		if a.Value != b.Value {
			return a.Value < b.Value
		}
		return bindRank(a) < bindRank(b)
	})
}

// SectionData returns a section's bytes and link-time address.
func (v *Vmlinux) SectionData(name string) ([]byte, uint64, error) {
	s := v.elf.Section(name)
	if s == nil {
		return nil, 0, fmt.Errorf("%s: no %s section", v.path, name)
	}
	if s.Type == elf.SHT_NOBITS {
		return nil, 0, fmt.Errorf("%s: %s has no file data", v.path, name)
	}
	d, err := v.sectionData(s, maxSectionBytes)
	if err != nil {
		return nil, 0, err
	}
	return d, s.Addr, nil
}

// Banner returns the kernel's linux_banner string as stored in the file
// ("Linux version <release> ..."), which names the build without a dump.
func (v *Vmlinux) Banner() (string, error) {
	s, ok := v.syms["linux_banner"]
	if !ok || int(s.Section) >= len(v.elf.Sections) {
		return "", fmt.Errorf("%s: %w: linux_banner", v.path, ErrNoSymbol)
	}
	sec := v.elf.Sections[s.Section]
	if s.Value < sec.Addr || s.Size == 0 || s.Size > 4096 || s.Value-sec.Addr > sec.Size || s.Size > sec.Size-(s.Value-sec.Addr) {
		return "", fmt.Errorf("%s: linux_banner outside its section", v.path)
	}
	buf := make([]byte, s.Size)
	if _, err := sec.ReadAt(buf, int64(s.Value-sec.Addr)); err != nil {
		return "", err
	}
	return strings.TrimRight(string(buf), "\x00\n"), nil
}

// TypeLetter is a symbol's type as nm and crash print it: T text, D
// data, B bss, R read-only, A absolute, W/V weak; lower case for a local
// symbol. It is read from the symbol's section flags, as nm does (a
// vmlinux whose .rodata is writable gives D there, as crash shows).
func (v *Vmlinux) TypeLetter(name string) (byte, bool) {
	s, ok := v.syms[name]
	if !ok {
		return 0, false
	}
	var c byte
	switch {
	case s.Section == elf.SHN_UNDEF:
		return 'U', true
	case s.Section == elf.SHN_ABS:
		c = 'a'
	case int(s.Section) >= len(v.elf.Sections):
		return 0, false
	default:
		sec := v.elf.Sections[s.Section]
		switch {
		case sec.Flags&elf.SHF_EXECINSTR != 0:
			c = 't'
		case sec.Type == elf.SHT_NOBITS:
			c = 'b'
		case sec.Flags&elf.SHF_WRITE != 0:
			c = 'd'
		case sec.Flags&elf.SHF_ALLOC != 0:
			c = 'r'
		default:
			c = 'n'
		}
	}
	switch elf.ST_BIND(s.Info) {
	case elf.STB_WEAK:
		if elf.ST_TYPE(s.Info) == elf.STT_OBJECT {
			return 'V', true
		}
		return 'W', true
	case elf.STB_GLOBAL:
		c -= 'a' - 'A'
	}
	return c, true
}
