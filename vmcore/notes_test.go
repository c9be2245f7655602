package vmcore

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

// userRegsBytes is a struct user_regs_struct whose register i holds
// base+i.
func userRegsBytes(base uint64) []byte {
	b := make([]byte, amd64.UserRegsSize)
	for i := range amd64.UserRegsCount {
		binary.LittleEndian.PutUint64(b[8*i:], base+uint64(i))
	}
	return b
}

func TestDecodePRStatus(t *testing.T) {
	// The ABI layout, and one whose pr_pid sits elsewhere (newer kernels
	// nest it in struct elf_prstatus_common; the offsets come from types).
	abi := CorePRStatus()
	other := PRStatusLayout{PIDOff: 8, RegOff: 40, Size: 260}
	mk := func(l PRStatusLayout, n int) []byte {
		d := make([]byte, n)
		binary.LittleEndian.PutUint32(d[l.PIDOff:], 4321)
		copy(d[l.RegOff:], userRegsBytes(0x100))
		return d
	}
	for _, c := range []struct {
		name string
		l    PRStatusLayout
		desc []byte
		err  string
	}{
		{"abi", abi, mk(abi, CorePRStatusSize), ""},
		{"abi without pr_fpvalid", abi, mk(abi, CorePRStatusRegOff+amd64.UserRegsSize), ""},
		{"other layout", other, mk(other, 260), ""},
		{"short", abi, mk(abi, CorePRStatusSize)[:CorePRStatusRegOff+amd64.UserRegsSize-1], "NT_PRSTATUS note of 327 bytes, want at least 328"},
		{"empty", abi, nil, "NT_PRSTATUS note of 0 bytes, want at least 328"},
		{"other short", other, mk(other, 260)[:100], "NT_PRSTATUS note of 100 bytes, want at least 256"},
		{"pr_reg offset overflows", PRStatusLayout{PIDOff: 0, RegOff: math.MaxUint64 - 8, Size: 336}, mk(abi, CorePRStatusSize), "NT_PRSTATUS note of 336 bytes, want at least 18446744073709551615"},
		{"pr_pid offset overflows", PRStatusLayout{PIDOff: math.MaxUint64 - 1, RegOff: 112, Size: 336}, mk(abi, CorePRStatusSize), "want at least 18446744073709551615"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pid, r, err := DecodePRStatus(c.desc, c.l)
			if c.err != "" {
				if err == nil || !strings.HasSuffix(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pid != 4321 {
				t.Errorf("pid %d, want 4321", pid)
			}
			// pr_reg is user_regs_struct: r15 first, rip 16th, gs last.
			for reg, want := range map[amd64.Reg]uint64{amd64.R15: 0x100, amd64.RBP: 0x104, amd64.RAX: 0x10a,
				amd64.OrigRAX: 0x10f, amd64.RIP: 0x110, amd64.CS: 0x111, amd64.EFLAGS: 0x112, amd64.RSP: 0x113,
				amd64.FSBase: 0x115, amd64.GSBase: 0x116, amd64.GS: 0x11a} {
				if v, ok := r.Get(reg); !ok || v != want {
					t.Errorf("%v = 0x%x, %v; want 0x%x", reg, v, ok, want)
				}
			}
		})
	}
}

// A short NT_PRSTATUS in a dump is refused with the note's offset.
func TestPRStatusNoteShort(t *testing.T) {
	_, err := classifyNotes("dump", []Note{{Name: NoteNameCore, Type: NT_PRSTATUS, Desc: make([]byte, 100), Offset: 0x40}})
	if err == nil || err.Error() != "dump: offset 0x40: NT_PRSTATUS note of 100 bytes, want at least 328" {
		t.Fatalf("error %v", err)
	}
}

func TestDecodeQEMUCPUState(t *testing.T) {
	le := binary.LittleEndian
	d := make([]byte, qemuCPUStateSize)
	le.PutUint32(d, 1)
	for i := range 18 { // rax rbx rcx rdx rsi rdi rsp rbp r8-r15 rip rflags
		le.PutUint64(d[qemuGPOff+8*i:], 0x200+uint64(i))
	}
	for i := range 10 { // cs ds es fs gs ss ldt tr gdt idt
		o := qemuSegOff + qemuSegSize*i
		le.PutUint32(d[o:], 0x10+uint32(i))
		le.PutUint64(d[o+16:], 0xf000+uint64(i))
	}
	le.PutUint64(d[qemuCROff+3*8:], 0xc3)
	for _, c := range []struct {
		name string
		desc []byte
		err  string
	}{
		{"v1", d, ""},
		{"short", d[:qemuCPUStateSize-1], "q: offset 0x80: QEMU CPU note of 431 bytes, want 432"},
		{"version", append([]byte{2, 0, 0, 0}, d[4:]...), "q: offset 0x80: QEMU CPU note version 2, only version 1 is known"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := decodeQEMUCPUState("q", Note{Name: noteNameQEMU, Desc: c.desc, Offset: 0x80}, 3)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[amd64.Reg]uint64{amd64.RAX: 0x200, amd64.RBX: 0x201, amd64.RCX: 0x202, amd64.RDX: 0x203,
				amd64.RSI: 0x204, amd64.RDI: 0x205, amd64.RSP: 0x206, amd64.RBP: 0x207, amd64.R8: 0x208, amd64.R15: 0x20f,
				amd64.RIP: 0x210, amd64.EFLAGS: 0x211, amd64.CS: 0x10, amd64.DS: 0x11, amd64.ES: 0x12, amd64.FS: 0x13,
				amd64.GS: 0x14, amd64.SS: 0x15, amd64.FSBase: 0xf003, amd64.GSBase: 0xf004}
			for reg, w := range want {
				if v, ok := s.Regs.Get(reg); !ok || v != w {
					t.Errorf("%v = 0x%x, %v; want 0x%x", reg, v, ok, w)
				}
			}
			if s.Regs.Has(amd64.OrigRAX) {
				t.Error("orig_rax known from a QEMU note, which has none")
			}
			if s.Index != 3 || s.CR[3] != 0xc3 || s.TR.Selector != 0x17 || s.IDT.Base != 0xf009 {
				t.Errorf("index %d cr3 0x%x tr %+v idt %+v", s.Index, s.CR[3], s.TR, s.IDT)
			}
		})
	}
}

func TestParseNotesAndSize(t *testing.T) {
	desc := make([]byte, CorePRStatusSize)
	n := prstatusNote(9, 1, 2)
	if got := NoteSize(NoteNameCore, CorePRStatusSize); got != uint64(len(n)) {
		t.Fatalf("NoteSize %d, the note is %d bytes", got, len(n))
	}
	// A zero header ends the area, as in the kernel's crash_notes buffer.
	notes, err := ParseNotes("buf", append(n, make([]byte, NoteHeaderSize)...), 0)
	if err != nil || len(notes) != 1 || notes[0].Name != NoteNameCore || notes[0].Type != NT_PRSTATUS || len(notes[0].Desc) != len(desc) {
		t.Fatalf("%+v %v", notes, err)
	}
	if _, err := ParseNotes("buf", n[:len(n)-1], 0x1000); err == nil || !strings.Contains(err.Error(), "buf: offset 0x1000: ELF note (namesz 5, descsz 336) runs past the end") {
		t.Fatalf("cut note: %v", err)
	}
}
