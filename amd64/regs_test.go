package amd64

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestRegString(t *testing.T) {
	for _, c := range []struct {
		reg  Reg
		want string
	}{
		{RAX, "rax"}, {RDX, "rdx"}, {RCX, "rcx"}, {RBX, "rbx"}, {RSI, "rsi"}, {RDI, "rdi"},
		{RBP, "rbp"}, {RSP, "rsp"}, {R8, "r8"}, {R15, "r15"}, {RIP, "rip"},
		{EFLAGS, "eflags"}, {ES, "es"}, {CS, "cs"}, {SS, "ss"}, {DS, "ds"}, {FS, "fs"}, {GS, "gs"},
		{FSBase, "fs_base"}, {GSBase, "gs_base"}, {OrigRAX, "orig_rax"},
		{17, "Reg(17)"}, {56, "Reg(56)"}, {-1, "Reg(-1)"}, {PrivateBase + 1, "Reg(257)"},
	} {
		if got := c.reg.String(); got != c.want {
			t.Errorf("Reg(%d).String() = %q, want %q", int(c.reg), got, c.want)
		}
	}
}

// The numbers are the psABI's: CFI register numbers index them.
func TestDWARFNumbers(t *testing.T) {
	for _, c := range []struct {
		reg  Reg
		want int
	}{{RAX, 0}, {RDX, 1}, {RCX, 2}, {RBX, 3}, {RSI, 4}, {RDI, 5}, {RBP, 6}, {RSP, 7}, {R8, 8}, {R15, 15},
		{RIP, 16}, {EFLAGS, 49}, {ES, 50}, {CS, 51}, {SS, 52}, {DS, 53}, {FS, 54}, {GS, 55}, {FSBase, 58}, {GSBase, 59}} {
		if int(c.reg) != c.want {
			t.Errorf("%v is %d, want %d", c.reg, int(c.reg), c.want)
		}
	}
	if OrigRAX <= 145 {
		t.Errorf("orig_rax %d is inside DWARF's numbers", int(OrigRAX))
	}
}

func TestRegsGetSet(t *testing.T) {
	var r Regs
	all := All()
	if len(all) != NumRegs {
		t.Fatalf("All has %d registers, want %d", len(all), NumRegs)
	}
	for i, reg := range all {
		if r.Has(reg) {
			t.Fatalf("%v known in a zero Regs", reg)
		}
		r.Set(reg, uint64(i)+100)
	}
	for i, reg := range all {
		if v, ok := r.Get(reg); !ok || v != uint64(i)+100 {
			t.Errorf("%v = %d, %v; want %d", reg, v, ok, i+100)
		}
	}
	r.Forget(RBX)
	if r.Has(RBX) || r.Value(RBX) != 0 || !r.Has(RAX) {
		t.Errorf("Forget(rbx): rbx %v %d, rax %v", r.Has(RBX), r.Value(RBX), r.Has(RAX))
	}
	// Registers a Regs cannot hold are never known and setting them
	// changes nothing.
	before := r
	for _, reg := range []Reg{17, 48, 56, 60, 130, -1, PrivateBase + 1} {
		r.Set(reg, 1)
		if r.Has(reg) {
			t.Errorf("%v known after Set", reg)
		}
	}
	if r != before {
		t.Error("setting registers a Regs cannot hold changed it")
	}
}

func TestUserRegsDecode(t *testing.T) {
	b := make([]byte, UserRegsSize+8)
	for i := range UserRegsCount + 1 {
		binary.LittleEndian.PutUint64(b[8*i:], 0x1000+uint64(i))
	}
	r, err := UserRegs().Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Reg]uint64{R15: 0x1000, R14: 0x1001, R13: 0x1002, R12: 0x1003, RBP: 0x1004, RBX: 0x1005,
		R11: 0x1006, R10: 0x1007, R9: 0x1008, R8: 0x1009, RAX: 0x100a, RCX: 0x100b, RDX: 0x100c,
		RSI: 0x100d, RDI: 0x100e, OrigRAX: 0x100f, RIP: 0x1010, CS: 0x1011, EFLAGS: 0x1012, RSP: 0x1013,
		SS: 0x1014, FSBase: 0x1015, GSBase: 0x1016, DS: 0x1017, ES: 0x1018, FS: 0x1019, GS: 0x101a}
	if len(want) != NumRegs {
		t.Fatalf("the test names %d registers, Regs holds %d", len(want), NumRegs)
	}
	for reg, v := range want {
		if got, ok := r.Get(reg); !ok || got != v {
			t.Errorf("%v = 0x%x, %v; want 0x%x", reg, got, ok, v)
		}
	}
}

func TestLayoutDecode(t *testing.T) {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b[0:], 1)
	binary.LittleEndian.PutUint64(b[16:], 3)
	frame := Layout{Name: "frame", Size: 24, Fields: []Field{{RBP, 0}, {RIP, 16}}}
	for _, c := range []struct {
		name string
		l    Layout
		b    []byte
		want map[Reg]uint64
		err  string
	}{
		{"whole", frame, b, map[Reg]uint64{RBP: 1, RIP: 3}, ""},
		{"longer buffer", frame, append(b, 0, 0), map[Reg]uint64{RBP: 1, RIP: 3}, ""},
		{"short", frame, b[:23], nil, "frame of 23 bytes, want 24"},
		{"empty", frame, nil, nil, "frame of 0 bytes, want 24"},
		{"user_regs_struct short", UserRegs(), b, nil, "user_regs_struct of 24 bytes, want 216"},
		{"field past the size", Layout{Name: "bad", Size: 8, Fields: []Field{{RBP, 4}}}, b[:8], nil, "bad: rbp at offset 4 runs past its 8 bytes"},
		{"field offset huge", Layout{Name: "bad", Size: 8, Fields: []Field{{RBP, 1 << 63}}}, b[:8], nil, "runs past its 8 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := c.l.Decode(c.b)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, reg := range All() {
				v, ok := r.Get(reg)
				w, wok := c.want[reg]
				if ok != wok || v != w {
					t.Errorf("%v = 0x%x, %v; want 0x%x, %v", reg, v, ok, w, wok)
				}
			}
		})
	}
	if off, ok := frame.Offset(RIP); !ok || off != 16 {
		t.Errorf("Offset(rip) = %d, %v", off, ok)
	}
	if _, ok := frame.Offset(RAX); ok {
		t.Error("Offset(rax) found in a layout without it")
	}
}
