package elfwrite

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sample() ([]Section, []Symbol) {
	secs := []Section{
		{Name: ".text", Type: elf.SHT_NOBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: 0xffffffff81000000, Size: 0x100000, Align: 4096},
		{Name: ".data..percpu", Type: elf.SHT_NOBITS, Flags: elf.SHF_ALLOC | elf.SHF_WRITE, Addr: 0, Size: 0x40000, Align: 4096},
		{Name: ".debug_info", Type: elf.SHT_PROGBITS, Data: []byte("info bytes"), Align: 1},
		{Name: ".comment", Type: elf.SHT_PROGBITS, Data: []byte("vmcore-gdbserver\x00"), Align: 8},
	}
	syms := []Symbol{
		{Name: "panic", Value: 0xffffffff81001000, Size: 0x200, Type: elf.STT_FUNC, Bind: elf.STB_GLOBAL, Section: ".text"},
		{Name: "local_fn", Value: 0xffffffff81002000, Size: 0x10, Type: elf.STT_FUNC, Bind: elf.STB_LOCAL, Section: ".text"},
		{Name: "runqueues", Value: 0x2c000, Size: 0x1000, Type: elf.STT_OBJECT, Bind: elf.STB_GLOBAL, Section: ".data..percpu"},
		{Name: "weakling", Value: 0xffffffff81003000, Type: elf.STT_FUNC, Bind: elf.STB_WEAK, Section: ".text"},
		{Name: "abs", Value: 42, Type: elf.STT_NOTYPE, Bind: elf.STB_LOCAL, Section: "*ABS*"},
		{Name: "undef", Type: elf.STT_NOTYPE, Bind: elf.STB_GLOBAL},
	}
	return secs, syms
}

func TestWrite(t *testing.T) {
	secs, syms := sample()
	out, err := Write(secs, syms)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Write(secs, syms)
	if !bytes.Equal(out, again) {
		t.Error("two writes of the same input differ")
	}
	f, err := elf.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Type != elf.ET_EXEC || f.Machine != elf.EM_X86_64 || len(f.Progs) != 0 {
		t.Errorf("header: %v %v %v %v, %d program headers", f.Class, f.Data, f.Type, f.Machine, len(f.Progs))
	}
	var names []string
	for _, s := range f.Sections {
		names = append(names, s.Name)
	}
	if got, want := strings.Join(names, " "), " .text .data..percpu .debug_info .comment .symtab .strtab .shstrtab"; got != want {
		t.Errorf("sections %q, want %q", got, want)
	}
	text := f.Section(".text")
	if text.Type != elf.SHT_NOBITS || text.Addr != 0xffffffff81000000 || text.Size != 0x100000 || text.Addralign != 4096 || text.Flags != elf.SHF_ALLOC|elf.SHF_EXECINSTR {
		t.Errorf(".text: %+v", text.SectionHeader)
	}
	for _, name := range []string{".debug_info", ".comment"} {
		d, err := f.Section(name).Data()
		var want []byte
		for _, s := range secs {
			if s.Name == name {
				want = s.Data
			}
		}
		if err != nil || !bytes.Equal(d, want) {
			t.Errorf("%s: %q %v", name, d, err)
		}
		if s := f.Section(name); s.Offset%s.Addralign != 0 {
			t.Errorf("%s at offset %d, alignment %d", name, s.Offset, s.Addralign)
		}
	}
	st := f.Section(".symtab")
	if st.Info != 3 || st.Entsize != 24 || f.Sections[st.Link].Name != ".strtab" {
		t.Errorf(".symtab: info %d entsize %d link %d", st.Info, st.Entsize, st.Link)
	}
	got, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	order := []string{"local_fn", "abs", "panic", "runqueues", "weakling", "undef"}
	if len(got) != len(order) {
		t.Fatalf("%d symbols: %+v", len(got), got)
	}
	byName := map[string]Symbol{}
	for _, s := range syms {
		byName[s.Name] = s
	}
	for i, g := range got {
		w := byName[order[i]]
		shndx := elf.SHN_UNDEF
		switch w.Section {
		case "*ABS*":
			shndx = elf.SHN_ABS
		case "":
		default:
			shndx = elf.SectionIndex(0)
			for j, s := range f.Sections {
				if s.Name == w.Section {
					shndx = elf.SectionIndex(j)
				}
			}
		}
		if g.Name != w.Name || g.Value != w.Value || g.Size != w.Size || elf.ST_TYPE(g.Info) != w.Type || elf.ST_BIND(g.Info) != w.Bind || g.Section != shndx {
			t.Errorf("symbol %d: %+v, want %+v", i, g, w)
		}
	}

	if _, err := exec.LookPath("readelf"); err != nil {
		t.Skip("no readelf (binutils)")
	}
	path := filepath.Join(t.TempDir(), "obj")
	os.WriteFile(path, out, 0o644)
	cmd := exec.Command("readelf", "-a", "-W", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() != 0 {
		t.Errorf("readelf -a: %v\n%s", err, stderr.String())
	}
}

func TestWriteErrors(t *testing.T) {
	secs, syms := sample()
	for _, c := range []struct {
		name  string
		secs  []Section
		syms  []Symbol
		wants string
	}{
		{"unknown section", secs, []Symbol{{Name: "x", Section: ".nope"}}, "no section .nope"},
		{"duplicate", append(secs[:1:1], secs[0]), nil, "two sections"},
		{"reserved", []Section{{Name: ".symtab"}}, nil, "written by elfwrite"},
		{"nobits data", []Section{{Name: ".bss", Type: elf.SHT_NOBITS, Data: []byte{}}}, nil, "NOBITS with data"},
		{"alignment", []Section{{Name: ".x", Align: 3}}, nil, "power of two"},
		{"NUL", secs, []Symbol{{Name: "a\x00b"}}, "NUL"},
		{"empty name", []Section{{}}, syms[:0], "bad name"},
	} {
		if _, err := Write(c.secs, c.syms); err == nil || !strings.Contains(err.Error(), c.wants) {
			t.Errorf("%s: %v, want %q", c.name, err, c.wants)
		}
	}
	defer func(m uint64) { maxSize = m }(maxSize)
	maxSize = 1 << 16
	big := make([]byte, maxSize/2+1)
	if _, err := Write([]Section{{Name: ".a", Data: big}, {Name: ".b", Data: big}}, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("two halves of the bound: %v", err)
	}
}
