package unwind

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

// mem is sparse test memory of 8-byte words.
type mem map[uint64]uint64

func (m mem) ReadU64(a uint64) (uint64, error) {
	v, ok := m[a]
	if !ok {
		return 0, fmt.Errorf("no memory at 0x%x", a)
	}
	return v, nil
}

// orcEntryBytes encodes an entry in the v1 (4.14 - 6.2) layout.
func orcEntryBytes(spOff, bpOff int16, spReg, bpReg, typ uint16, end bool) []byte {
	b := make([]byte, 6)
	binary.LittleEndian.PutUint16(b, uint16(spOff))
	binary.LittleEndian.PutUint16(b[2:], uint16(bpOff))
	bits := spReg | bpReg<<4 | typ<<8
	if end {
		bits |= 1 << 10
	}
	binary.LittleEndian.PutUint16(b[4:], bits)
	return b
}

// table builds a v1 table from (ip, entry) pairs placed at ipBase.
func table(t *testing.T, ipBase uint64, ips []uint64, entries [][]byte) *Table {
	ipData := make([]byte, 4*len(ips))
	var unw []byte
	for i, ip := range ips {
		binary.LittleEndian.PutUint32(ipData[4*i:], uint32(int32(int64(ip)-int64(ipBase+uint64(4*i)))))
		unw = append(unw, entries[i]...)
	}
	tb, err := ParseORC("test", ORCv1, ipData, ipBase, unw)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// ptRegs is struct pt_regs of x86_64 (orig_ax at 120 is not a register).
var ptRegs = func() amd64.Layout {
	l := amd64.Layout{Name: "pt_regs", Size: 168}
	for i, r := range []amd64.Reg{amd64.R15, amd64.R14, amd64.R13, amd64.R12, amd64.RBP, amd64.RBX, amd64.R11, amd64.R10,
		amd64.R9, amd64.R8, amd64.RAX, amd64.RCX, amd64.RDX, amd64.RSI, amd64.RDI, amd64.OrigRAX, amd64.RIP, amd64.CS, amd64.EFLAGS, amd64.RSP, amd64.SS} {
		if r != amd64.OrigRAX {
			l.Fields = append(l.Fields, amd64.Field{Reg: r, Off: uint64(8 * i)})
		}
	}
	return l
}()

// Three functions: f (sp+16, called), g (sp+8, called), an entry stub
// whose CFA holds a full pt_regs from user space.
func TestUnwindCallsAndRegs(t *testing.T) {
	const (
		f     = 0xffffffff81001000
		g     = 0xffffffff81002000
		entry = 0xffffffff81003000
		end   = 0xffffffff81004000
	)
	tb := table(t, 0xffffffff82000000, []uint64{f, g, entry, end}, [][]byte{
		orcEntryBytes(16, 0, 5 /*SP*/, 0, 0 /*call*/, false),
		orcEntryBytes(24, -16, 5, 1 /*PREV_SP*/, 0, false),
		orcEntryBytes(0, 0, 5, 0, 1 /*regs*/, false),
		orcEntryBytes(0, 0, 0, 0, 0, true),
	})
	m := mem{}
	sp := uint64(0x1000)
	// f's frame: return address into g at sp+8.
	m[sp+8] = g + 0x10
	// g's frame (CFA = sp+16+24): return address at CFA-8, rbp at CFA-16.
	m[sp+32] = entry + 0x20
	m[sp+24] = 0xbbbb
	// entry: pt_regs at its CFA = sp+40, user mode.
	regs := sp + 40
	m[regs+128], m[regs+136], m[regs+152], m[regs+32] = 0x401000, 0x33, 0x7ffe0000, 0x1234
	for off := uint64(0); off <= 160; off += 8 {
		if _, ok := m[regs+off]; !ok {
			m[regs+off] = off
		}
	}
	u := &Unwinder{Tables: []TableRange{{tb, f, end}}, Mem: m, PtRegs: ptRegs}
	var start amd64.Regs
	start.Set(amd64.RIP, f+4)
	start.Set(amd64.RSP, sp)
	start.Set(amd64.RBP, 0xaaaa)
	frames, err := u.Unwind(start, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{f + 4, g + 0x10, entry + 0x20, 0x401000}
	if len(frames) != len(want) {
		t.Fatalf("%d frames: %+v", len(frames), frames)
	}
	for i, w := range want {
		if frames[i].PC != w {
			t.Errorf("frame %d pc 0x%x, want 0x%x", i, frames[i].PC, w)
		}
	}
	if v, _ := frames[2].Regs.Get(amd64.RBP); v != 0xbbbb {
		t.Errorf("rbp after PREV_SP rule: 0x%x", v)
	}
	last := frames[3]
	if !last.UserMode || last.Kind != KindException || last.PtRegsAddr != regs || last.Regs.Value(amd64.RBP) != 0x1234 {
		t.Errorf("user frame %+v", last)
	}
}

// An undefined entry with nothing else to go by stops with a reason; a
// stack that loops stops too.
func TestUnwindStops(t *testing.T) {
	const f = 0xffffffff81001000
	tb := table(t, 0xffffffff82000000, []uint64{f, f + 0x100}, [][]byte{
		orcEntryBytes(0, 0, 0, 0, 0, false), // undefined
		orcEntryBytes(8, 0, 5, 0, 0, false),
	})
	u := &Unwinder{Tables: []TableRange{{tb, f, f + 0x1000}}, Mem: mem{}, PtRegs: ptRegs}
	var r amd64.Regs
	r.Set(amd64.RIP, f+4)
	r.Set(amd64.RSP, 0x1000)
	if _, err := u.Unwind(r, true); !errors.Is(err, ErrNoORC) {
		t.Fatalf("undefined entry: %v", err)
	}
	// f+0x100 returns to itself with the same sp: a loop.
	m := mem{0x1000: f + 0x101}
	u.Mem = m
	r.Set(amd64.RIP, f+0x101)
	r.Set(amd64.RSP, 0x1000-8)
	frames, err := u.Unwind(r, false)
	if err == nil || len(frames) > 128 {
		t.Fatalf("loop: %d frames, %v", len(frames), err)
	}
}

func TestORCVersions(t *testing.T) {
	for _, c := range []struct {
		header  []byte
		release string
		want    ORCVersion
	}{
		{nil, "6.1.0-56-cloud-amd64", ORCv1},
		{nil, "6.3.0", ORCv2},
		{nil, "6.12.117+deb12-cloud-amd64", ORCv3},
		{[]byte{0xfe, 0x5d, 0x32, 0xbf, 0x58, 0x1b, 0xd6, 0x3b, 0x2c, 0xa9, 0xa5, 0xc6, 0x5b, 0xa5, 0xa6, 0x25, 0xea, 0xb3, 0xfe, 0x24}, "", ORCv3},
	} {
		v, err := ORCVersionOf(c.header, c.release)
		if err != nil || v != c.want {
			t.Errorf("%x %q: %v %v", c.header, c.release, v, err)
		}
	}
	if _, err := ORCVersionOf([]byte{1, 2, 3}, "6.9"); err == nil {
		t.Error("an unknown header was accepted")
	}
	// v3 types and v4 register numbering decode to the same meaning.
	v3 := []byte{8, 0, 0, 0, 5 | 2<<8&0xff, 2} // sp_reg SP(5), type CALL(2)
	v4 := []byte{8, 0, 0, 0, 3, 2}             // sp_reg SP(3 in v4), type CALL
	if a, b := decodeEntry(ORCv3, v3), decodeEntry(ORCv4, v4); a.SPReg != regSP || b.SPReg != regSP || a.Type != typeCall || b.Type != typeCall {
		t.Errorf("v3 %+v v4 %+v", a, b)
	}
}

func FuzzORC(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 8, 0, 0, 0}, []byte{8, 0, 0, 0, 5, 0, 16, 0, 0, 0, 5, 0}, uint8(1), uint64(0xffffffff81000004))
	f.Fuzz(func(t *testing.T, ips, entries []byte, v uint8, pc uint64) {
		tb, err := ParseORC("fuzz", ORCVersion(v%4+1), ips, 0xffffffff81000000, entries)
		if err != nil {
			return
		}
		tb.Find(pc)
		m := mem{}
		for i := 0; i+8 <= len(entries); i += 8 {
			m[0x1000+uint64(i)] = binary.LittleEndian.Uint64(entries[i:])
		}
		u := &Unwinder{Tables: []TableRange{{tb, 0, ^uint64(0)}}, Mem: m, PtRegs: ptRegs, MaxFrames: 64}
		var r amd64.Regs
		r.Set(amd64.RIP, pc)
		r.Set(amd64.RSP, 0x1000)
		r.Set(amd64.RBP, 0x1008)
		frames, _ := u.Unwind(r, true)
		if len(frames) > 64 {
			t.Fatalf("%d frames", len(frames))
		}
	})
}

func FuzzCFI(f *testing.F) {
	f.Add([]byte{0x14, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 1, 0x78, 0x10, 0x0c, 7, 8, 0x90, 1, 0, 0}, uint64(0x10))
	f.Fuzz(func(t *testing.T, data []byte, pc uint64) {
		c, err := ParseCFI(data, 0)
		if err != nil {
			return
		}
		var r amd64.Regs
		r.Set(amd64.RSP, 0x1000)
		c.step(pc, r, func(uint64) (uint64, error) { return 0, errors.New("none") })
	})
}

// An ORC call entry that reads a return address of 0 (stale ORC over code
// it does not describe) stops with a reason, not silently; without CFI to
// consult, the frames found so far are kept.
func TestUnwindZeroReturnAddress(t *testing.T) {
	const f = 0xffffffff81001000
	tb := table(t, 0xffffffff82000000, []uint64{f}, [][]byte{orcEntryBytes(8, 0, 5, 0, 0, false)})
	u := &Unwinder{Tables: []TableRange{{tb, f, f + 0x1000}}, Mem: mem{0x1000: 0}, PtRegs: ptRegs,
		IsText: func(pc uint64) bool { return pc >= f && pc < f+0x1000 }}
	var r amd64.Regs
	r.Set(amd64.RIP, f+4)
	r.Set(amd64.RSP, 0x1000)
	frames, err := u.Unwind(r, true)
	if !errors.Is(err, ErrBadFrame) || len(frames) != 1 {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
}

// A kernel without ORC is unwound by its rbp chain. On a frame-pointer
// kernel those frames are calls and rbp 0 ends the stack; on an ORC
// kernel whose table misses the code they are guesses and the walk
// reports why it stopped. An odd rbp (entry code's encoded pointer to
// pt_regs) yields the exception frame in either case.
func TestUnwindFramePointers(t *testing.T) {
	const (
		a, b, c = 0xffffffff81001010, 0xffffffff81002020, 0xffffffff81003030
		stack   = 0xffffc90000010000
	)
	m := mem{
		stack + 0x00: stack + 0x40, stack + 0x08: b, // a's frame: caller rbp, return into b
		stack + 0x40: stack + 0x80, stack + 0x48: c, // b's frame: return into c
		stack + 0x80: 0, stack + 0x88: 0xffffffff81004040, // c's frame, the outermost
	}
	// The pt_regs the encoded rbp points at: a user-mode return.
	regsAt := uint64(stack + 0x200)
	for _, f := range ptRegs.Fields {
		m[regsAt+f.Off] = 0
	}
	for reg, v := range map[amd64.Reg]uint64{amd64.RIP: 0x401000, amd64.CS: 0x33, amd64.RSP: 0x7ffc0000} {
		off, _ := ptRegs.Offset(reg)
		m[regsAt+off] = v
	}
	encoded := mem{}
	for k, v := range m {
		encoded[k] = v
	}
	encoded[stack+0x80] = regsAt | 1

	for _, tc := range []struct {
		name          string
		mem           mem
		framePointers bool
		kinds         []Kind
		wantErr       error
		userMode      bool
	}{
		{"frame-pointer kernel", m, true, []Kind{KindCall, KindCall, KindCall, KindCall}, nil, false},
		{"ORC kernel, uncovered code", m, false, []Kind{KindCall, KindFramePointer, KindFramePointer, KindFramePointer}, ErrNoORC, false},
		{"frame-pointer kernel, entry from user space", encoded, true, []Kind{KindCall, KindCall, KindCall, KindCall, KindException}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &Unwinder{Mem: tc.mem, PtRegs: ptRegs, FramePointers: tc.framePointers}
			var r amd64.Regs
			r.Set(amd64.RIP, a)
			r.Set(amd64.RSP, stack-0x20)
			r.Set(amd64.RBP, stack)
			frames, err := u.Unwind(r, true)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var kinds []Kind
			for _, f := range frames {
				kinds = append(kinds, f.Kind)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(tc.kinds) {
				t.Fatalf("kinds %v, want %v", kinds, tc.kinds)
			}
			if frames[1].PC != b || frames[2].PC != c {
				t.Errorf("callers 0x%x 0x%x, want 0x%x 0x%x", frames[1].PC, frames[2].PC, uint64(b), uint64(c))
			}
			if last := frames[len(frames)-1]; last.UserMode != tc.userMode {
				t.Errorf("last frame user mode %v, want %v", last.UserMode, tc.userMode)
			}
		})
	}
}
