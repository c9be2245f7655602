package unwind

import (
	"errors"
	"fmt"
	"testing"
)

// codeAt is a code image at base for Derive.
type codeAt struct {
	base uint64
	b    []byte
}

func (c codeAt) ReadCode(p []byte, addr uint64) error {
	if addr < c.base || addr >= c.base+uint64(len(c.b)) {
		return fmt.Errorf("no code at 0x%x", addr)
	}
	clear(p)
	copy(p, c.b[addr-c.base:])
	return nil
}

// Hand-assembled epilogues (encodings as gas writes them) and the rule
// each implies at its first byte, 0x1000; 0x2000 starts another function.
func TestDerive(t *testing.T) {
	const base = 0x1000
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	var (
		ret       = []byte{0xc3}
		popRBX    = []byte{0x5b}
		popRBP    = []byte{0x5d}
		popR12    = []byte{0x41, 0x5c}
		leave     = []byte{0xc9}
		ud2       = []byte{0x0f, 0x0b}
		addRSPb0  = []byte{0x48, 0x81, 0xc4, 0xb0, 0x00, 0x00, 0x00} // add $0xb0,%rsp
		subRSP8   = []byte{0x48, 0x83, 0xec, 0x08}                   // sub $0x8,%rsp
		pushf     = []byte{0x9c}
		popMemRSP = []byte{0x8f, 0x04, 0x24}                      // pop (%rsp)
		leaRSPBP  = []byte{0x48, 0x8d, 0x65, 0xf0}                // lea -0x10(%rbp),%rsp
		movRAXRSP = []byte{0x48, 0x89, 0xc4}                      // mov %rax,%rsp
		jmpRAX    = []byte{0xff, 0xe0}                            // jmp *%rax
		movRAXRBP = []byte{0x48, 0x89, 0xc5}                      // mov %rax,%rbp
		movMem    = []byte{0x48, 0x89, 0x84, 0x24, 0x80, 0, 0, 0} // mov %rax,0x80(%rsp)
	)
	jmpTo := func(from, to uint64) []byte { // jmp rel32 at from
		r := int32(int64(to) - int64(from+5))
		return []byte{0xe9, byte(r), byte(r >> 8), byte(r >> 16), byte(r >> 24)}
	}
	callTo := func(from, to uint64) []byte {
		b := jmpTo(from, to)
		b[0] = 0xe8
		return b
	}
	call := Entry{Type: typeCall, SPReg: regSP, BPReg: regUndefined}
	withSP := func(e Entry, off int16) Entry { e.SPOffset = off; return e }
	tests := []struct {
		name string
		code []byte
		want Entry
		err  bool
	}{
		{"ret", ret, withSP(call, 8), false},
		{"frame and rbx", cat(addRSPb0, popRBX, ret), withSP(call, 0xc0), false},
		{"rbp popped", cat(popRBP, ret), Entry{Type: typeCall, SPReg: regSP, SPOffset: 16, BPReg: regPrevSP, BPOffset: -16}, false},
		{"leave", cat(leave, ret), Entry{Type: typeCall, SPReg: regBP, SPOffset: 16, BPReg: regPrevSP, BPOffset: -16}, false},
		{"frame-pointer epilogue", cat(leaRSPBP, popRBX, popR12, popRBP, ret), Entry{Type: typeCall, SPReg: regBP, SPOffset: 16, BPReg: regPrevSP, BPOffset: -16}, false},
		// __crash_kexec: the saved ip is followed by a store and a jump
		// back into the body, then the epilogue.
		{"jump back", cat(movMem, []byte{0xeb, 0x02}, ud2, addRSPb0, popRBX, ret), withSP(call, 0xc0), false},
		{"tail call", cat(popRBX, jmpTo(base+1, 0x2000)), withSP(call, 16), false},
		{"return thunk after a frame", cat(subRSP8, pushf, popMemRSP, addRSPb0, jmpTo(base+15, 0x2000)), withSP(call, 0xb0-8+8), false},
		{"branch over a trap", cat([]byte{0x74, 0x03}, popRBX, ret, ud2), withSP(call, 16), false},
		{"trap on the fall-through", cat([]byte{0x74, 0x02}, ud2, ret), withSP(call, 8), false},
		{"call returns", cat(callTo(base, 0x2000), popRBX, ret), withSP(call, 16), false},
		{"call that does not return", append(callTo(base, 0x2000-5+0), 0), Entry{}, true},
		{"indirect jump", jmpRAX, Entry{}, true},
		{"rsp loaded", cat(movRAXRSP, ret), Entry{}, true},
		{"rbp clobbered", cat(movRAXRBP, ret), Entry{}, true},
		{"self loop", []byte{0xeb, 0xfe}, Entry{}, true},
		{"undecodable", []byte{0x0f, 0xff, 0xff, 0xff}, Entry{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code := codeAt{base, tc.code}
			if tc.name == "call that does not return" {
				// The call is the last instruction before the next
				// function (here at base+5).
				start := func(a uint64) bool { return a == base+5 }
				if _, err := Derive(code, base, start); !errors.Is(err, ErrNotDerivable) {
					t.Fatalf("err %v, want ErrNotDerivable", err)
				}
				return
			}
			start := func(a uint64) bool { return a == 0x2000 }
			e, err := Derive(code, base, start)
			if tc.err {
				if !errors.Is(err, ErrNotDerivable) {
					t.Fatalf("got %+v, %v; want ErrNotDerivable", e, err)
				}
				return
			}
			if err != nil || e != tc.want {
				t.Fatalf("got %+v, %v; want %+v", e, err, tc.want)
			}
		})
	}
}

// Derive reads code from a dump: any bytes end in a rule or an error,
// within its instruction bound.
func FuzzDerive(f *testing.F) {
	f.Add([]byte{0x48, 0x81, 0xc4, 0xb0, 0, 0, 0, 0x5b, 0xc3})
	f.Add([]byte{0xc9, 0xc3})
	f.Add([]byte{0x74, 0x02, 0x0f, 0x0b, 0xeb, 0xfa})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		e, err := Derive(codeAt{0x1000, b}, 0x1000, func(a uint64) bool { return a == 0x1000+uint64(len(b)) })
		if err == nil && e.Type != typeCall {
			t.Fatalf("rule of type %v", e.Type)
		}
	})
}
