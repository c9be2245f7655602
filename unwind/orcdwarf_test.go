package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/frame"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

// evalExpr evaluates the DWARF expression operators BuildCFIObject
// emits, with the consumer's initial push (the CFA) if push is set.
func evalExpr(expr []byte, r amd64.Regs, m mem, push *uint64) (uint64, error) {
	var st []uint64
	if push != nil {
		st = append(st, *push)
	}
	b := bytes.NewReader(expr)
	for b.Len() > 0 {
		op, _ := b.ReadByte()
		switch {
		case op >= opBreg0 && op < opBreg0+32:
			off, _ := readSleb(b)
			v, ok := r.Get(amd64.Reg(op - opBreg0))
			if !ok {
				return 0, fmt.Errorf("register %d unknown", op-opBreg0)
			}
			st = append(st, v+uint64(off))
		case op == opDeref:
			v, err := m.ReadU64(st[len(st)-1])
			if err != nil {
				return 0, err
			}
			st[len(st)-1] = v
		case op == opPlusUconst:
			v, _ := readUleb(b)
			st[len(st)-1] += v
		case op == opConsts:
			v, _ := readSleb(b)
			st = append(st, uint64(v))
		case op == opPlus:
			st[len(st)-2] += st[len(st)-1]
			st = st[:len(st)-1]
		case op == opDrop:
			st = st[:len(st)-1]
		default:
			return 0, fmt.Errorf("operator 0x%x", op)
		}
	}
	if len(st) == 0 {
		return 0, fmt.Errorf("empty stack")
	}
	return st[len(st)-1], nil
}

func readUleb(b *bytes.Reader) (uint64, error) { return binary.ReadUvarint(b) }

func readSleb(b *bytes.Reader) (int64, error) {
	var v int64
	var shift uint
	for {
		c, err := b.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
}

// debugFrame returns the object's .debug_frame, checking the ELF around it.
func debugFrame(t *testing.T, obj []byte) []byte {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	if ef.Machine != elf.EM_X86_64 || ef.Class != elf.ELFCLASS64 {
		t.Fatalf("ELF %v %v", ef.Machine, ef.Class)
	}
	s := ef.Section(".debug_frame")
	if s == nil {
		t.Fatal("no .debug_frame")
	}
	data, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// gdbStep unwinds one frame as a DWARF consumer would with the
// object's FDE for pc. ok is false when the return address is undefined.
func gdbStep(t *testing.T, fdes frame.FrameDescriptionEntries, pc uint64, r amd64.Regs, m mem) (next amd64.Regs, signal, ok bool) {
	t.Helper()
	fde, err := fdes.FDEForPC(pc)
	if err != nil {
		t.Fatalf("no FDE for 0x%x", pc)
	}
	ctx, err := fde.EstablishFrame(pc)
	if err != nil {
		t.Fatal(err)
	}
	var cfa uint64
	switch ctx.CFA.Rule {
	case frame.RuleCFA:
		v, _ := r.Get(amd64.Reg(ctx.CFA.Reg))
		cfa = v + uint64(ctx.CFA.Offset)
	case frame.RuleExpression:
		if cfa, err = evalExpr(ctx.CFA.Expression, r, m, nil); err != nil {
			t.Fatalf("CFA at 0x%x: %v", pc, err)
		}
	default:
		t.Fatalf("CFA rule %v", ctx.CFA.Rule)
	}
	next = r
	next.Set(amd64.RSP, cfa)
	for col, rule := range ctx.Regs {
		reg := amd64.Reg(col) // amd64 numbers registers as DWARF does
		var addr uint64
		switch rule.Rule {
		case frame.RuleUndefined:
			if col == uint64(amd64.RIP) {
				return amd64.Regs{}, false, false
			}
			continue
		case frame.RuleSameVal:
			continue
		case frame.RuleOffset:
			addr = cfa + uint64(rule.Offset)
		case frame.RuleExpression:
			if addr, err = evalExpr(rule.Expression, r, m, &cfa); err != nil {
				t.Fatalf("column %d at 0x%x: %v", col, pc, err)
			}
		default:
			t.Fatalf("column %d rule %v", col, rule.Rule)
		}
		v, err := m.ReadU64(addr)
		if err != nil {
			t.Fatalf("column %d at 0x%x: %v", col, pc, err)
		}
		next.Set(reg, v)
	}
	return next, fde.CIE.Augmentation == cieSignalAug, true
}

// Each ORC entry kind, translated, unwinds to what the ORC unwinder
// finds; the end of the stack and user space have no caller.
func TestCFIObjectMatchesORC(t *testing.T) {
	const base = 0xffffffff81001000
	cases := []struct {
		name  string
		entry []byte
		// spReg/bpReg in the v1 encoding (5 SP, 4 BP, 1 PREV_SP, 9 SP_INDIRECT)
		signal bool
		end    bool
	}{
		{"call sp", orcEntryBytes(24, -16, 5, 1, 0, false), false, false},
		{"call sp unaligned bp", orcEntryBytes(24, -12, 5, 1, 0, false), false, false},
		{"call bp", orcEntryBytes(16, -8, 4, 4, 0, false), false, false},
		{"call sp indirect", orcEntryBytes(8, 0, 9, 0, 0, false), false, false},
		{"call bp indirect", orcEntryBytes(-8, 0, 8, 0, 0, false), false, false},
		{"regs", orcEntryBytes(8, 0, 5, 0, 1, false), true, false},
		{"regs partial", orcEntryBytes(16, 0, 5, 0, 2, false), true, false},
		{"end of stack", orcEntryBytes(0, 0, 0, 0, 0, true), false, true},
		{"undefined", orcEntryBytes(0, 0, 0, 0, 0, false), false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := table(t, 0xffffffff82000000, []uint64{base, base + 0x40}, [][]byte{c.entry, orcEntryBytes(8, 0, 5, 0, 0, false)})
			m := mem{}
			const sp, bp = 0x10000, 0x10400
			for a := uint64(sp - 0x100); a < sp+0x800; a += 4 {
				m[a] = 0xa000000 + a
			}
			m[sp] = sp + 0x200      // for SP_INDIRECT
			m[bp-8] = sp + 0x300    // for BP_INDIRECT
			m[sp+8+152] = 0x7ffe000 // pt_regs sp
			var r amd64.Regs
			for _, reg := range amd64.All() {
				r.Set(reg, 0x1111*uint64(reg+1))
			}
			r.Set(amd64.RSP, sp)
			r.Set(amd64.RBP, bp)
			pc := uint64(base + 0x10)
			r.Set(amd64.RIP, pc)
			obj, err := BuildCFIObject(CFIObject{Tables: []TableRange{{tb, base, base + 0x80}}, PtRegs: ptRegs, UserStart: 1, UserEnd: 1 << 47})
			if err != nil {
				t.Fatal(err)
			}
			c2, err := ParseCFI(debugFrame(t, obj), 0)
			if err != nil {
				t.Fatal(err)
			}
			got, signal, ok := gdbStep(t, c2.fdes, pc, r, m)
			u := &Unwinder{Mem: m, PtRegs: ptRegs}
			e, _ := tb.Find(pc)
			want, err := u.step(e, r)
			if c.end {
				if ok {
					t.Fatalf("outermost frame has a caller: %+v", got)
				}
				return
			}
			if err != nil || !ok {
				t.Fatalf("step: %v, ok %v", err, ok)
			}
			if signal != c.signal {
				t.Errorf("signal CIE %v, want %v", signal, c.signal)
			}
			for _, reg := range amd64.All() {
				w, known := want.Regs.Get(reg)
				if g, _ := got.Get(reg); known && g != w {
					t.Errorf("%v = 0x%x, ORC says 0x%x", reg, g, w)
				}
			}
			// The user-space FDE ends the stack.
			if _, _, ok := gdbStep(t, c2.fdes, 0x401000, r, m); ok {
				t.Error("user-space frame has a caller")
			}
		})
	}
}

// What the object's own input CFI covers is left out; the rest stays.
func TestCFIObjectLeavesOwnCFI(t *testing.T) {
	const f, g, end uint64 = 0xffffffff81001000, 0xffffffff81001100, 0xffffffff81001200
	tb := table(t, 0xffffffff82000000, []uint64{f, g}, [][]byte{orcEntryBytes(8, 0, 5, 0, 0, false), orcEntryBytes(8, 0, 5, 0, 1, false)})
	all, err := BuildCFIObject(CFIObject{Tables: []TableRange{{tb, f, end}}, PtRegs: ptRegs})
	if err != nil {
		t.Fatal(err)
	}
	allCFI, err := ParseCFI(debugFrame(t, all), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := allCFI.Ranges(); len(r) != 1 || r[0] != [2]uint64{f, end} {
		t.Fatalf("ranges %x", r)
	}
	// An own CFI for [f, g) leaves the object g's range alone.
	half, err := BuildCFIObject(CFIObject{Tables: []TableRange{{tb, f, g}}, PtRegs: ptRegs})
	if err != nil {
		t.Fatal(err)
	}
	own, err := ParseCFI(debugFrame(t, half), 0)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := BuildCFIObject(CFIObject{Tables: []TableRange{{tb, f, end}}, Own: own, PtRegs: ptRegs})
	if err != nil {
		t.Fatal(err)
	}
	restCFI, err := ParseCFI(debugFrame(t, rest), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := restCFI.Ranges(); len(r) != 1 || r[0] != [2]uint64{g, end} {
		t.Fatalf("ranges left %x, want [%x %x)", r, g, end)
	}
	if _, err := BuildCFIObject(CFIObject{Tables: []TableRange{{tb, f, end}}, PtRegs: ptRegs, MaxBytes: 64}); err == nil {
		t.Error("size bound not enforced")
	}
}

// Any ORC table yields an object or an error, the same bytes each time,
// whose .debug_frame parses.
func FuzzCFIObject(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 8, 0, 0, 0}, []byte{8, 0, 0, 0, 5, 0, 16, 0, 0, 0, 5, 1}, uint8(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0}, []byte{8, 0, 0, 0, 0x19, 0, 16, 0, 0, 0, 5, 2}, uint8(2))
	f.Fuzz(func(t *testing.T, ips, entries []byte, v uint8) {
		tb, err := ParseORC("fuzz", ORCVersion(v%4+1), ips, 0xffffffff81000000, entries)
		if err != nil {
			return
		}
		lo, hi := tb.Range()
		o := CFIObject{Tables: []TableRange{{tb, lo, hi + 16}}, PtRegs: ptRegs, UserStart: 1, UserEnd: 1 << 47, MaxBytes: 1 << 20}
		a, err := BuildCFIObject(o)
		if err != nil {
			return
		}
		b, _ := BuildCFIObject(o)
		if !bytes.Equal(a, b) {
			t.Fatal("output differs between runs")
		}
		if _, err := ParseCFI(debugFrame(t, a), 0); err != nil {
			t.Fatal(err)
		}
	})
}
