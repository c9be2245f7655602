package symbols

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// ptypeLine is one member line of gdb's ptype /o, or the same line made
// from a CType: offsets are absolute bytes (bit: within that byte, for
// bitfields), union members have none.
type ptypeLine struct {
	offset   int64 // -1: a union member (gdb shows its size only)
	bit      int64 // -1: not a bitfield
	size     uint64
	decl     string // gdb's text (a CType line: the member name)
	expanded bool   // a struct or union whose members follow
}

func (l ptypeLine) String() string {
	return fmt.Sprintf("off %d bit %d size %d %q", l.offset, l.bit, l.size, l.decl)
}

var (
	ptypeStructLine = regexp.MustCompile(`^/\* +(\d+)(?:: *(\d+))? +\| +(\d+) \*/ +(.*)$`)
	ptypeUnionLine  = regexp.MustCompile(`^/\* +(\d+) \*/ +(.*)$`)
	ptypeTotal      = regexp.MustCompile(`/\* total size \(bytes\): +(\d+) \*/`)
)

// gdbPtypeO runs gdb 13's ptype /o for each type on a vmlinux and parses
// every member line, per type.
func gdbPtypeO(t *testing.T, vmlinux string, types []string) (map[string][]ptypeLine, map[string]uint64) {
	t.Helper()
	bin, err := exec.LookPath("gdb")
	if err != nil {
		t.Fatal("gdb is required: ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-batch", "-nx"}
	for _, ty := range types {
		args = append(args, "-ex", "echo ==== "+ty+"\\n", "-ex", "ptype /o "+ty)
	}
	out, err := exec.CommandContext(ctx, bin, append(args, vmlinux)...).CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	res := map[string][]ptypeLine{}
	totals := map[string]uint64{} // the last total is the type's own
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if n, ok := strings.CutPrefix(line, "==== "); ok {
			cur = n
			continue
		}
		if m := ptypeTotal.FindStringSubmatch(line); m != nil {
			totals[cur], _ = strconv.ParseUint(m[1], 10, 64)
			continue
		}
		if m := ptypeStructLine.FindStringSubmatch(line); m != nil {
			off, _ := strconv.ParseInt(m[1], 10, 64)
			bit := int64(-1)
			if m[2] != "" {
				bit, _ = strconv.ParseInt(m[2], 10, 64)
			}
			size, _ := strconv.ParseUint(m[3], 10, 64)
			res[cur] = append(res[cur], ptypeLine{off, bit, size, m[4], strings.HasSuffix(m[4], "{")})
		} else if m := ptypeUnionLine.FindStringSubmatch(line); m != nil {
			size, _ := strconv.ParseUint(m[1], 10, 64)
			res[cur] = append(res[cur], ptypeLine{-1, -1, size, m[2], strings.HasSuffix(m[2], "{")})
		}
	}
	return res, totals
}

// ptypeOf lays t out as gdb's ptype /o does: members of struct or union
// type (not through a typedef) are expanded in place.
func ptypeOf(t *CType, base uint64, out []ptypeLine) []ptypeLine {
	union := t.Kind == TypeUnion
	for _, m := range t.Members {
		bits := base + m.BitOffset
		l := ptypeLine{offset: int64(bits / 8), bit: -1, size: m.Type.ByteSize(), decl: m.Name}
		if m.BitSize > 0 {
			l.bit = int64(bits % 8)
		}
		if union {
			l.offset = -1
		}
		if m.Type != nil && (m.Type.Kind == TypeStruct || m.Type.Kind == TypeUnion) {
			l.expanded = true
			out = append(out, l)
			out = ptypeOf(m.Type, bits, out)
			continue
		}
		out = append(out, l)
	}
	return out
}

var identRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// The type model gives every member of struct task_struct, struct
// mm_struct and struct page (nested unions, anonymous structs,
// bitfields) the offset and size gdb 13's ptype /o gives, from BTF (the
// vmlinux's .BTF, where the kernel has one) and from DWARF, on every
// fixture kernel.
func TestCTypeMatchesGDB(t *testing.T) {
	types := []string{"struct task_struct", "struct mm_struct", "struct page"}
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			path := set.Path(t, "kernel", "vmlinux")
			want, totals := gdbPtypeO(t, path, types)
			v, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			type source struct {
				name string
				l    TypeLookup
			}
			d, err := v.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			sources := []source{{"DWARF", d}}
			if set.Name != fixtures.Series418 {
				b, err := v.BTF()
				if err != nil {
					t.Fatal(err)
				}
				sources = append(sources, source{"BTF", b})
			}
			for _, s := range sources {
				src, l := s.name, s.l
				for _, ty := range types {
					ct, err := l.LookupType(ty)
					if err != nil {
						t.Fatalf("%s: %s: %v", src, ty, err)
					}
					got := ptypeOf(ct, 0, nil)
					w := want[ty]
					if len(w) < 20 {
						t.Fatalf("gdb: %s: only %d member lines", ty, len(w))
					}
					if len(got) != len(w) {
						t.Errorf("%s: %s: %d member lines, gdb %d", src, ty, len(got), len(w))
					}
					bad := 0
					for i := 0; i < len(got) && i < len(w) && bad < 10; i++ {
						g, x := got[i], w[i]
						named := g.decl == "" || g.expanded || containsIdent(x.decl, g.decl)
						if g.offset != x.offset || g.bit != x.bit || g.size != x.size || g.expanded != x.expanded || !named {
							t.Errorf("%s: %s: member line %d: %v, gdb %v", src, ty, i, g, x)
							bad++
						}
					}
					if ct.Size != totals[ty] {
						t.Errorf("%s: %s: size %d, gdb %d", src, ty, ct.Size, totals[ty])
					}
					t.Logf("%s: %s: %d members, offsets and sizes as gdb's", src, ty, len(got))
				}
			}
		})
	}
}

func containsIdent(s, name string) bool {
	for _, id := range identRE.FindAllString(s, -1) {
		if id == name {
			return true
		}
	}
	return false
}

// typegraphBTF has what the type model reads beyond layouts: kflag and
// old-style bitfields, a signed char, bool, const pointers, a function
// prototype with parameter names and ..., a variable, a forward
// declaration and an enum.
func typegraphBTF() []byte {
	b := &btfBuilder{strs: []byte{0}}
	u32 := b.typ("unsigned int", BTF_KIND_INT, false, 0, 4, 32)                                         // 1
	i32 := b.typ("int", BTF_KIND_INT, false, 0, 4, btfIntSigned<<24|32)                                 // 2
	chr := b.typ("char", BTF_KIND_INT, false, 0, 1, btfIntSigned<<24|8)                                 // 3
	bl := b.typ("_Bool", BTF_KIND_INT, false, 0, 1, btfIntBool<<24|8)                                   // 4
	old := b.typ("unsigned int", BTF_KIND_INT, false, 0, 4, 3<<16|5)                                    // 5: 5 bits at bit 3
	cc := b.typ("", BTF_KIND_CONST, false, 0, chr)                                                      // 6
	pcc := b.typ("", BTF_KIND_PTR, false, 0, cc)                                                        // 7 const char *
	fwd := b.typ("opaque", BTF_KIND_FWD, false, 0, 0)                                                   // 8
	pfwd := b.typ("", BTF_KIND_PTR, false, 0, fwd)                                                      // 9
	proto := b.typ("", BTF_KIND_FUNC_PROTO, false, 3, i32, b.str("fmt"), pcc, b.str("n"), u32, 0, 0)    // 10
	b.typ("printit", BTF_KIND_FUNC, false, 1, proto)                                                    // 11
	pfn := b.typ("", BTF_KIND_PTR, false, 0, proto)                                                     // 12
	arr := b.typ("", BTF_KIND_ARRAY, false, 0, 0, chr, u32, 16)                                         // 13
	en := b.typ("color", BTF_KIND_ENUM, true, 2, 4, b.str("RED"), uint32(0xffffffff), b.str("BLUE"), 2) // 14
	s := b.typ("thing", BTF_KIND_STRUCT, true, 7, 40,                                                   // 15
		b.str("a"), u32, 3<<24|0, b.str("b"), u32, 13<<24|3, b.str("ok"), bl, 32,
		b.str("name"), arr, 40, b.str("fn"), pfn, 192, b.str("p"), pfwd, 256, b.str("c"), en, 96)
	b.typ("old", BTF_KIND_STRUCT, false, 1, 4, b.str("x"), old, 0) // 16
	b.typ("the_thing", BTF_KIND_VAR, false, 0, s, 1)               // 17
	return b.bytes()
}

func TestBTFTypeModel(t *testing.T) {
	b, err := ParseBTF(typegraphBTF())
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.LookupType("struct thing")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range s.Members {
		got = append(got, fmt.Sprintf("%s@%d:%d %s", m.Name, m.BitOffset, m.BitSize, Declare(m.Type, "")))
	}
	want := "a@0:3 unsigned int|b@3:13 unsigned int|ok@32:0 _Bool|name@40:0 char [16]|fn@192:0 int (*)(const char *, unsigned int, ...)|p@256:0 struct opaque *|c@96:0 enum color"
	if strings.Join(got, "|") != want {
		t.Errorf("members:\n %s\nwant\n %s", strings.Join(got, "|"), want)
	}
	if k := s.Members[2].Type.Kind; k != TypeBool {
		t.Errorf("_Bool is %v", k)
	}
	if e := s.Members[3].Type.Elem; e.Kind != TypeChar || !e.Signed {
		t.Errorf("char: %+v", e)
	}
	if c := s.Members[6].Type; !c.Signed || c.Enumerators[0].Value != -1 {
		t.Errorf("signed enum: %+v", c)
	}
	o, err := b.LookupType("struct old")
	if err != nil || o.Members[0].BitOffset != 3 || o.Members[0].BitSize != 5 {
		t.Errorf("old-style bitfield: %+v %v", o, err)
	}
	d, err := WhatisFrom(b, "printit", "BTF")
	if err != nil || d.Text != "int printit(const char *fmt, unsigned int n, ...);" || d.Kind != "function" || len(d.Params) != 3 {
		t.Errorf("whatis printit: %+v %v", d, err)
	}
	d, err = WhatisFrom(b, "the_thing", "BTF")
	if err != nil || d.Text != "struct thing the_thing;" {
		t.Errorf("whatis the_thing: %+v %v", d, err)
	}
	if _, err := WhatisFrom(b, "nothing", "BTF"); !errors.Is(err, ErrNoType) {
		t.Errorf("whatis nothing: %v", err)
	}
	d, err = WhatisFrom(b, "struct thing", "BTF")
	if err != nil || !strings.Contains(d.Text, "    unsigned int b : 13;\n") || !strings.Contains(d.Text, "    int (*fn)(const char *, unsigned int, ...);\n") || d.Size != 40 {
		t.Errorf("whatis struct thing: %+v %v", d, err)
	}
}

// Self-containing types (which C cannot have, hostile BTF can) end in
// an error naming the bound, not a stack overflow.
func TestBTFTypeModelCycles(t *testing.T) {
	b := &btfBuilder{strs: []byte{0}}
	b.typ("loop", BTF_KIND_STRUCT, false, 1, 8, b.str("self"), 1, 0) // 1 contains itself
	b.typ("td", BTF_KIND_TYPEDEF, false, 0, 2)                       // 2 typedef of itself
	bt, err := ParseBTF(b.bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"struct loop", "td"} {
		if _, err := bt.LookupType(n); err == nil || !strings.Contains(err.Error(), "deep") {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// FuzzBTFTypes builds the type model of every named type of hostile BTF:
// bounded time and memory, errors not panics.
func FuzzBTFTypes(f *testing.F) {
	f.Add(typegraphBTF())
	f.Add(sampleBTF())
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBTF(data)
		if err != nil {
			return
		}
		n := 0
		for name, ids := range b.byName {
			for _, id := range ids {
				if n++; n > 64 {
					return
				}
				switch b.types[id].kind {
				case BTF_KIND_STRUCT:
					if ct, err := b.LookupType("struct " + name); err == nil {
						DescribeType(ct)
					}
				case BTF_KIND_UNION:
					b.LookupType("union " + name)
				case BTF_KIND_ENUM, BTF_KIND_ENUM64:
					b.LookupType("enum " + name)
				case BTF_KIND_FUNC, BTF_KIND_VAR, BTF_KIND_TYPEDEF:
					WhatisFrom(b, name, "BTF")
				}
			}
		}
	})
}

// modelC has what the DWARF type model reads: bitfields (DW_AT_bit_offset
// in DWARF 4, DW_AT_data_bit_offset in 5), anonymous unions, a 2-D
// array, a function pointer, const, bool and a signed char.
const modelC = `
struct thing;
typedef struct { long counter; } atomic_long_t;
struct model {
	unsigned a : 3, b : 13;
	_Bool ok;
	signed char sc;
	union { long u1; char u2[3]; };
	int matrix[4][9];
	int (*fn)(const char *, unsigned, ...);
	const struct thing *p;
	atomic_long_t n;
	enum { NEG = -1, POS = 1 } e;
} m;
`

func TestDWARFTypeModel(t *testing.T) {
	for _, version := range []string{"-gdwarf-4", "-gdwarf-5"} {
		t.Run(version, func(t *testing.T) {
			d := dwarfOf(t, compileC(t, modelC, version))
			ct, err := d.LookupType("struct model")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ct.Members {
				got = append(got, fmt.Sprintf("%s@%d:%d %s", m.Name, m.BitOffset, m.BitSize, Declare(m.Type, "")))
			}
			want := "a@0:3 unsigned int|b@3:13 unsigned int|ok@16:0 _Bool|sc@24:0 signed char|@64:0 union {...}|matrix@128:0 int [4][9]|" +
				"fn@1280:0 int (*)(const char *, unsigned int, ...)|p@1344:0 const struct thing *|n@1408:0 atomic_long_t|e@1472:0 enum {...}"
			if strings.Join(got, "|") != want {
				t.Errorf("members:\n %s\nwant\n %s", strings.Join(got, "|"), want)
			}
			if ct.Size != 192 {
				t.Errorf("size %d", ct.Size)
			}
			if sc := ct.Members[3].Type; sc.Kind != TypeChar || !sc.Signed {
				t.Errorf("signed char: %+v", sc)
			}
			if e := ct.Members[9].Type; e.Kind != TypeEnum || len(e.Enumerators) != 2 || e.Enumerators[0].Value != -1 {
				t.Errorf("enum: %+v", e)
			}
			if p := ct.Members[7].Type.Elem; !p.Incomplete || !p.Const {
				t.Errorf("a pointer's struct is not expanded: %+v", p)
			}
			if _, err := d.LookupType("struct nothing"); !errors.Is(err, ErrNoType) {
				t.Errorf("struct nothing: %v", err)
			}
		})
	}
}

// whatis made from the DWARF type model (functions and variables from
// the second, symbol pass) says what Vmlinux.Whatis says from
// debug/dwarf: text, members and offsets, return and parameters.
func TestDWARFWhatisFromModel(t *testing.T) {
	names := []string{"struct list_head", "struct task_struct", "enum pid_type", "schedule", "handle_mm_fault", "panic", "init_task", "jiffies_64", "runqueues"}
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			v, err := Open(set.Path(t, "kernel", "vmlinux"))
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			d, err := v.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if _, err := d.symbolIndex(); err != nil {
				t.Fatal(err)
			}
			t.Logf("functions and variables indexed in %v", time.Since(start).Round(time.Millisecond))
			for _, n := range names {
				want, err := v.Whatis(n)
				if err != nil {
					t.Fatalf("Vmlinux.Whatis %s: %v", n, err)
				}
				got, err := WhatisFrom(d, n, "DWARF")
				if err != nil {
					t.Fatalf("WhatisFrom %s: %v", n, err)
				}
				if g, w := fmt.Sprintf("%+v", *got), fmt.Sprintf("%+v", *want); g != w {
					t.Errorf("whatis %s from the type model:\n%s\nfrom debug/dwarf:\n%s", n, g, w)
				}
			}
		})
	}
}
