package gdbfiles

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// memFile is a gdbstub.File over bytes.
type memFile struct{ *bytes.Reader }

func (memFile) Stat() (fs.FileInfo, error) { return nil, fs.ErrInvalid }
func (memFile) Close() error               { return nil }

// Reads that start, end or lie inside a patch see it, and only there.
func TestPatchedReadAt(t *testing.T) {
	base := bytes.Repeat([]byte{'.'}, 32)
	f := Patched(memFile{bytes.NewReader(base)}, []Patch{{Off: 4, Data: []byte("ab")}, {Off: 30, Data: []byte("yz")}})
	want := []byte("....ab........................yz")
	for off := 0; off <= 32; off++ {
		for n := 0; off+n <= 34; n++ {
			b := make([]byte, n)
			got, err := f.ReadAt(b, int64(off))
			end := min(off+n, 32)
			if got != end-off || (err != nil && off+n < 32) || (err == nil && off+n > 32) {
				t.Fatalf("ReadAt(%d, %d) = %d, %v", n, off, got, err)
			}
			if !bytes.Equal(b[:got], want[off:end]) {
				t.Fatalf("ReadAt(%d, %d) = %q, want %q", n, off, b[:got], want[off:end])
			}
		}
	}
	if g := Patched(memFile{bytes.NewReader(base)}, nil); g.(memFile).Reader == nil {
		t.Fatal("no patches: not the file itself")
	}
}

// The view of each fixture vmlinux has no PT_LOAD at address 0 and a
// SHT_NOBITS .data..percpu; all else, the other program headers and
// sections and every byte outside the two type words, is the file's.
func TestPerCPUView(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			path := set.Path(t, "kernel", "vmlinux")
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			patches, err := PerCPUView(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(patches) != 2 {
				t.Fatalf("%d patches, want the per-CPU PT_LOAD and .data..percpu: %v", len(patches), patches)
			}
			st, _ := f.Stat()
			pv := Patched(f, patches)
			orig, err := elf.NewFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := elf.NewFile(pv)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Progs) != len(orig.Progs) || len(got.Sections) != len(orig.Sections) {
				t.Fatalf("%d program headers and %d sections, the file has %d and %d", len(got.Progs), len(got.Sections), len(orig.Progs), len(orig.Sections))
			}
			for i, p := range got.Progs {
				o := orig.Progs[i].ProgHeader
				if o.Type == elf.PT_LOAD && o.Vaddr == 0 {
					o.Type = elf.PT_NULL
				}
				if p.ProgHeader != o {
					t.Errorf("program header %d: %+v, want %+v", i, p.ProgHeader, o)
				}
			}
			for i, s := range got.Sections {
				o := orig.Sections[i].SectionHeader
				if o.Name == ".data..percpu" {
					if o.Addr != 0 || s.Type != elf.SHT_NOBITS {
						t.Errorf(".data..percpu at %#x, type %v", o.Addr, s.Type)
					}
					o.Type = elf.SHT_NOBITS
				}
				if s.SectionHeader != o {
					t.Errorf("section %d: %+v, want %+v", i, s.SectionHeader, o)
				}
			}
			// The patched words lie in the header tables, nowhere else.
			for _, p := range patches {
				if p.Off <= 0 || p.Off+4 > st.Size() || len(p.Data) != 4 {
					t.Errorf("patch %+v", p)
				}
				b := make([]byte, 4)
				f.ReadAt(b, p.Off)
				if bytes.Equal(b, p.Data) {
					t.Errorf("patch %+v changes nothing", p)
				}
			}
			if id, oid := buildID(t, got), buildID(t, orig); id == nil || !bytes.Equal(id, oid) {
				t.Errorf("build id %x, the file's %x", id, oid)
			}
		})
	}
}

// A module (ET_REL) and a non-kernel executable are served as they are.
func TestPerCPUViewOtherFiles(t *testing.T) {
	for _, path := range []string{fixtureModule(t), "/bin/sh"} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		patches, err := PerCPUView(f)
		f.Close()
		if err != nil || len(patches) != 0 {
			t.Errorf("%s: %v, %v", path, patches, err)
		}
	}
	if _, err := PerCPUView(bytes.NewReader([]byte("not an ELF file"))); err == nil {
		t.Error("no error for a non-ELF file")
	}
}

func buildID(t *testing.T, f *elf.File) []byte {
	t.Helper()
	s := f.Section(".notes")
	if s == nil {
		s = f.Section(".note.gnu.build-id")
	}
	if s == nil {
		return nil
	}
	data, err := io.ReadAll(s.Open())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// percpuELF is a minimal vmlinux-shaped ELF: a text PT_LOAD and a
// zero-based per-CPU PT_LOAD holding .data..percpu.
func percpuELF() []byte {
	var b bytes.Buffer
	shstr := []byte("\x00.text\x00.data..percpu\x00.shstrtab\x00")
	const phoff, nph, shnum = 64, 2, 4
	textOff := uint64(phoff + nph*56)
	pcpuOff := textOff + 16
	strOff := pcpuOff + 16
	shoff := (strOff + uint64(len(shstr)) + 7) &^ 7
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1, Phoff: phoff, Shoff: shoff,
		Ehsize: 64, Phentsize: 56, Phnum: nph, Shentsize: 64, Shnum: shnum, Shstrndx: 3}
	copy(h.Ident[:], "\x7fELF\x02\x01\x01")
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_LOAD), Off: textOff, Vaddr: 0xffffffff81000000, Filesz: 16, Memsz: 16})
	binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_LOAD), Off: pcpuOff, Vaddr: 0, Filesz: 16, Memsz: 16})
	b.Write(make([]byte, 32))
	b.Write(shstr)
	for uint64(b.Len()) < shoff {
		b.WriteByte(0)
	}
	binary.Write(&b, binary.LittleEndian, elf.Section64{})
	binary.Write(&b, binary.LittleEndian, elf.Section64{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC | elf.SHF_EXECINSTR), Addr: 0xffffffff81000000, Off: textOff, Size: 16})
	binary.Write(&b, binary.LittleEndian, elf.Section64{Name: 7, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC | elf.SHF_WRITE), Addr: 0, Off: pcpuOff, Size: 16})
	binary.Write(&b, binary.LittleEndian, elf.Section64{Name: 21, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr))})
	return b.Bytes()
}

// A hostile file never panics the view, and a patch never lies outside
// the file.
func FuzzPerCPUView(f *testing.F) {
	seed := percpuELF()
	if p, err := PerCPUView(bytes.NewReader(seed)); err != nil || len(p) != 2 {
		f.Fatalf("seed: %d patches, %v", len(p), err)
	}
	f.Add(seed)
	f.Add(seed[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		patches, err := PerCPUView(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, p := range patches {
			if p.Off < 0 || p.Off+int64(len(p.Data)) > int64(len(data)) {
				t.Fatalf("patch at %d+%d outside the %d-byte file", p.Off, len(p.Data), len(data))
			}
		}
	})
}
