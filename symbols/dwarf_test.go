package symbols

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// typesC is a tiny translation unit with the shapes the kernel model
// meets: nested and anonymous structs and unions, a bitfield, arrays, a
// typedef'd anonymous struct, a declaration before the definition, and
// enums with negative and 64-bit values. Its main prints the compiler's
// own answers, which the DWARF answers must equal.
const typesC = `
#include <stddef.h>
#include <stdio.h>
struct fwd;
struct fwd *use_fwd;
typedef struct { long counter; } atomic_long_t;
struct inner { int a; union { long u1; char u2[3]; }; };
struct fwd { int x; };
struct outer {
	char c;
	struct inner in;
	struct { int anon_a; struct { short deep; }; };
	unsigned flag : 3, later : 5;
	int after_bits;
	atomic_long_t cnt[7];
	int matrix[4][9];
	const volatile long qual;
	char flex[];
};
enum colour { RED = -2, GREEN = 5, BLUE = 0x7fffffff };
enum { ANON_A = 17, ANON_B };
enum big { HUGE = 0x123456789aLL };
struct outer o; struct fwd f; enum colour col; enum big bg; int anon = ANON_B;
#define P(n, v) printf("%s %ld\n", n, (long)(v))
int main(void) {
	P("outer.c", offsetof(struct outer, c));
	P("outer.in", offsetof(struct outer, in));
	P("outer.in.u2", offsetof(struct outer, in.u2));
	P("outer.anon_a", offsetof(struct outer, anon_a));
	P("outer.deep", offsetof(struct outer, deep));
	P("outer.after_bits", offsetof(struct outer, after_bits));
	P("outer.cnt", offsetof(struct outer, cnt));
	P("outer.qual", offsetof(struct outer, qual));
	P("outer.flex", offsetof(struct outer, flex));
	P("sizeof.outer", sizeof(struct outer));
	P("sizeof.inner", sizeof(struct inner));
	P("sizeof.fwd", sizeof(struct fwd));
	P("sizeof.atomic_long_t", sizeof(atomic_long_t));
	P("len.cnt", sizeof(o.cnt) / sizeof(o.cnt[0]));
	P("len.matrix", sizeof(o.matrix) / sizeof(o.matrix[0]));
	P("len.in.u2", sizeof(o.in.u2));
	P("RED", RED); P("GREEN", GREEN); P("BLUE", BLUE); P("ANON_B", ANON_B); P("HUGE", HUGE);
	return 0;
}
`

// compileC builds src with gcc -g -c and returns the object.
func compileC(t testing.TB, src string, flags ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	c, o := filepath.Join(dir, "x.c"), filepath.Join(dir, "x.o")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-g", "-c", "-o", o, c}, flags...)
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, out)
	}
	obj, err := os.ReadFile(o)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// compileTypes builds typesC with gcc -g -c (the object the DWARF source
// reads) and as a program (whose output is the compiler's answers).
func compileTypes(t testing.TB, extra ...string) (obj []byte, want map[string]int64) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "types.c")
	if err := os.WriteFile(src, []byte(typesC), 0o644); err != nil {
		t.Fatal(err)
	}
	o := filepath.Join(dir, "types.o")
	args := append([]string{"-g", "-c", "-o", o, src}, extra...)
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, out)
	}
	exe := filepath.Join(dir, "types")
	if out, err := exec.Command("gcc", "-o", exe, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(exe).Output()
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatal(line)
		}
		want[f[0]] = n
	}
	obj, err = os.ReadFile(o)
	if err != nil {
		t.Fatal(err)
	}
	return obj, want
}

func dwarfOf(t testing.TB, obj []byte) *DWARFTypes {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	d, err := DWARFTypesFromELF("types.o", f, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDWARFTypes checks every answer against the compiler's, in DWARF 4
// (DW_AT_bit_offset bitfields) and 5.
func TestDWARFTypes(t *testing.T) {
	for _, version := range []string{"-gdwarf-4", "-gdwarf-5"} {
		t.Run(version, func(t *testing.T) {
			obj, want := compileTypes(t, version)
			d := dwarfOf(t, obj)
			for key, w := range want {
				var got int64
				var err error
				kind, rest, _ := strings.Cut(key, ".")
				switch {
				case kind == "outer":
					var n uint64
					n, err = d.Offset("outer", rest)
					got = int64(n)
				case kind == "sizeof":
					var n uint64
					n, err = d.Sizeof(rest)
					got = int64(n)
				case kind == "len":
					var n uint64
					n, err = d.ArrayLen("outer", rest)
					got = int64(n)
				default:
					got, err = d.EnumValue(key)
				}
				if err != nil || got != w {
					t.Errorf("%s: DWARF says %d (%v), the compiler %d", key, got, err, w)
				}
			}
			if n, err := d.ArrayLen("outer", "flex"); err != nil || n != 0 {
				t.Errorf("flexible array: %d, %v", n, err)
			}
			e, err := d.Enum("colour")
			if err != nil || len(e) != 3 || e["RED"] != want["RED"] || e["BLUE"] != want["BLUE"] {
				t.Errorf("enum colour: %v, %v", e, err)
			}
			for _, c := range []struct {
				fn   func() error
				what string
			}{
				{func() error { _, err := d.Offset("outer", "nope"); return err }, "missing member"},
				{func() error { _, err := d.Offset("nostruct", "a"); return err }, "missing struct"},
				{func() error { _, err := d.Offset("outer", "c.x"); return err }, "member of a char"},
				{func() error { _, err := d.Enum("nope"); return err }, "missing enum"},
				{func() error { _, err := d.EnumValue("NOPE"); return err }, "missing enumerator"},
			} {
				if err := c.fn(); !errors.Is(err, ErrNoType) {
					t.Errorf("%s: %v, want ErrNoType", c.what, err)
				}
			}
			if _, err := d.Offset("outer", "later"); err == nil || !strings.Contains(err.Error(), "bitfield") {
				t.Errorf("a bitfield member: %v", err)
			}
		})
	}
}

// FuzzDWARF feeds hostile DWARF sections to the type source. It fuzzes
// the sections, not an ELF object around them: a whole gcc object is
// 26 KB, mostly code and symbols, and every input that finds new
// coverage is minimised (up to a minute) before fuzzing goes on, which
// left it at a few executions in 20 s; the sections of typesC are some
// 2 KB. Relocations are already applied in the seeds.
func FuzzDWARF(f *testing.F) {
	if seeds, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDWARF", "*")); err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/fuzz/FuzzDWARF (VMCORE_WRITE_CORPUS=1 go test -run TestWriteDWARFCorpus ./symbols)")
	}
	f.Fuzz(func(t *testing.T, abbrev, info, str, lineStr, strOffsets []byte) {
		d, err := NewDWARFTypes("fuzz", map[string][]byte{".debug_abbrev": abbrev, ".debug_info": info,
			".debug_str": str, ".debug_line_str": lineStr, ".debug_str_offsets": strOffsets})
		if err != nil {
			return
		}
		d.Offset("outer", "in.u2")
		d.Offset("outer", "deep")
		d.Sizeof("outer")
		d.ArrayLen("outer", "matrix")
		d.Enum("colour")
		d.EnumValue("HUGE")
		if ct, err := d.LookupType("struct outer"); err == nil {
			DescribeType(ct)
		}
		d.LookupType("enum colour")
		d.LookupType("atomic_long_t")
		WhatisFrom(d, "o", "DWARF")
	})
}

// fuzzC is typesC cut to what FuzzDWARF asks about, so its seeds are a
// few hundred bytes: the fuzzer minimises every input that finds new
// coverage, in time quadratic in its length, before it goes on.
const fuzzC = `
struct inner { int a; union { long u1; char u2[3]; }; };
typedef struct { long counter; } atomic_long_t;
struct outer { char c; struct inner in; struct { short deep; }; int matrix[4][9]; unsigned f : 3; atomic_long_t n; };
enum colour { RED = -2, HUGE = 0x123456789aLL };
struct outer o; enum colour col;
`

// fuzzSections are FuzzDWARF's arguments, in order.
var fuzzSections = []string{".debug_abbrev", ".debug_info", ".debug_str", ".debug_line_str", ".debug_str_offsets"}

// TestWriteDWARFCorpus refreshes testdata/fuzz/FuzzDWARF with the
// (relocated) DWARF sections of typesC's objects.
func TestWriteDWARFCorpus(t *testing.T) {
	if os.Getenv("VMCORE_WRITE_CORPUS") == "" {
		t.Skip("set VMCORE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDWARF")
	old, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, o := range old {
		os.Remove(o)
	}
	os.MkdirAll(dir, 0o755)
	for _, v := range []string{"4", "5"} {
		obj := compileC(t, fuzzC, "-gdwarf-"+v, "-O0", "-gno-column-info")
		d := dwarfOf(t, obj)
		text := "go test fuzz v1\n"
		for _, n := range fuzzSections {
			text += fmt.Sprintf("[]byte(%q)\n", d.sec[n])
		}
		if err := os.WriteFile(filepath.Join(dir, "types-dwarf"+v), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
