package symbols

import (
	"bytes"
	"context"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/elfwrite"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// genDWARFData parses generated sections with Go's debug/dwarf.
func genDWARFData(s *DWARFSections) (*dwarf.Data, error) {
	return dwarf.New(s.Abbrev, nil, nil, s.Info, nil, nil, nil, s.Str)
}

// checkRefs walks every DIE and checks that each reference is to a DIE's
// offset; it returns the entries by offset.
func checkRefs(d *dwarf.Data) (map[dwarf.Offset]*dwarf.Entry, error) {
	r := d.Reader()
	byOff := map[dwarf.Offset]*dwarf.Entry{}
	var refs []dwarf.Field
	var from []dwarf.Offset
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.Tag == 0 {
			continue
		}
		byOff[e.Offset] = e
		for _, f := range e.Field {
			if f.Class == dwarf.ClassReference {
				refs = append(refs, f)
				from = append(from, e.Offset)
			}
		}
	}
	for i, f := range refs {
		if _, ok := byOff[f.Val.(dwarf.Offset)]; !ok {
			return nil, fmt.Errorf("DIE at 0x%x: %v refers to 0x%x, which is no DIE", from[i], f.Attr, f.Val)
		}
	}
	return byOff, nil
}

// The type model's BTF (kflag and old-style bitfields, a variadic
// prototype, a forward declaration, an enum with a value of -1, a
// variable) as DWARF that Go's debug/dwarf reads back as the same C.
func TestBTFDWARFSmall(t *testing.T) {
	b, err := ParseBTF(typegraphBTF())
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.DWARF([]DWARFVariable{
		{Name: "the_thing", Addr: 0x1000, TypeID: 15},
		{Name: "thing_ptr", Addr: 0x2000, TypeName: "struct thing **"},
		{Name: "opaque_p", Addr: 0x3000, TypeName: "struct opaque*"},
		{Name: "vp", Addr: 0x4000, TypeName: "void *"},
		{Name: "u", Addr: 0x4008, TypeName: "unsigned"},
		{Name: "nothing", Addr: 0x5000, TypeName: "struct nothing"},
		{Name: "badid", Addr: 0x5000, TypeID: 1000},
		{Name: "nul\x00", Addr: 0x5000, TypeID: 15},
		{Name: "file_thing", Addr: 0x6000, TypeName: "struct thing *", File: "kernel/thing.c", Static: true},
	}, []DWARFFunction{{Name: "printit", Addr: 0xffffffff81000000, Size: 0x40}, {Name: "absent", Addr: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Skipped) != 4 {
		t.Errorf("skipped %q, want nothing, badid, nul and absent", s.Skipped)
	}
	d, err := genDWARFData(s)
	if err != nil {
		t.Fatal(err)
	}
	byOff, err := checkRefs(d)
	if err != nil {
		t.Fatal(err)
	}
	// The file-static variable is in a unit of its file's name, static.
	units := map[string][]string{}
	r := d.Reader()
	unit := ""
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit {
			unit, _ = e.Val(dwarf.AttrName).(string)
		}
		if e.Tag == dwarf.TagVariable {
			n, _ := e.Val(dwarf.AttrName).(string)
			if e.Val(dwarf.AttrExternal) == nil {
				n += " (static)"
			}
			units[unit] = append(units[unit], n)
		}
	}
	if fmt.Sprint(units["kernel/thing.c"]) != "[file_thing (static)]" || len(units) != 2 {
		t.Errorf("units and their variables: %q", units)
	}
	got := map[string]string{}
	for off, e := range byOff {
		name, _ := e.Val(dwarf.AttrName).(string)
		switch e.Tag {
		case dwarf.TagStructType, dwarf.TagVariable, dwarf.TagEnumerationType:
			if e.Tag != dwarf.TagVariable && e.Val(dwarf.AttrDeclaration) != nil {
				continue
			}
			var desc string
			if e.Tag == dwarf.TagVariable {
				ty, err := d.Type(e.Val(dwarf.AttrType).(dwarf.Offset))
				if err != nil {
					t.Fatal(err)
				}
				loc := e.Val(dwarf.AttrLocation).([]byte)
				desc = fmt.Sprintf("%s @%x", ty, loc[1:])
			} else {
				ty, err := d.Type(off)
				if err != nil {
					t.Fatal(err)
				}
				desc = ty.String()
				if st, ok := ty.(*dwarf.StructType); ok {
					var fs []string
					for _, f := range st.Field {
						fs = append(fs, fmt.Sprintf("%s %s @%d:%d:%d", f.Name, f.Type, f.ByteOffset, f.DataBitOffset, f.BitSize))
					}
					desc = fmt.Sprintf("%s size %d {%s}", st.StructName, st.ByteSize, strings.Join(fs, "; "))
				}
			}
			got[e.Tag.String()+" "+name] = desc
		case dwarf.TagSubprogram:
			var ps []string
			r := d.Reader()
			r.Seek(off)
			r.Next()
			for {
				c, _ := r.Next()
				if c == nil || c.Tag == 0 {
					break
				}
				pn, _ := c.Val(dwarf.AttrName).(string)
				if c.Tag == dwarf.TagUnspecifiedParameters {
					pn = "..."
				} else {
					pt, err := d.Type(c.Val(dwarf.AttrType).(dwarf.Offset))
					if err != nil {
						t.Fatal(err)
					}
					pn = pt.String() + " " + pn
				}
				ps = append(ps, pn)
			}
			rt, _ := d.Type(e.Val(dwarf.AttrType).(dwarf.Offset))
			got["subprogram "+name] = fmt.Sprintf("%s %s(%s) %x+%d", rt, name, strings.Join(ps, ", "), e.Val(dwarf.AttrLowpc), e.Val(dwarf.AttrHighpc))
		}
	}
	want := map[string]string{
		"StructType thing": "thing size 40 {a unsigned int @0:0:3; b unsigned int @0:3:13; ok _Bool @4:0:0; name [16]char @5:0:0; " +
			"fn *func(*const char, unsigned int, ...) int @24:0:0; p *struct opaque @32:0:0; c enum color {RED=-1; BLUE=2} @12:0:0}",
		"StructType old":        "old size 4 {x unsigned int @0:3:5}",
		"EnumerationType color": "enum color {RED=-1; BLUE=2}",
		"Variable the_thing":    "struct thing @0010000000000000",
		"Variable thing_ptr":    "**struct thing @0020000000000000",
		"Variable opaque_p":     "*struct opaque @0030000000000000",
		"Variable vp":           "*void @0040000000000000",
		"Variable file_thing":   "*struct thing @0060000000000000",
		"subprogram printit":    "int printit(*const char fmt, unsigned int n, ...) ffffffff81000000+64",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s:\n got %s\nwant %s", k, got[k], w)
		}
	}
	if t.Failed() {
		for k, v := range got {
			t.Logf("%s: %s", k, v)
		}
	}
}

// Loops of typedefs, qualifiers and arrays become void where they are
// referred to, and type tags are skipped.
func TestBTFDWARFCycles(t *testing.T) {
	b, err := ParseBTF(cyclesBTF())
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(b.Variables()); got != "[{pcpu_s 10 7 1 .data..percpu 256 16} {plain 12 1 0  0 0}]" {
		t.Errorf("variables %s", got)
	}
	s, err := b.DWARF([]DWARFVariable{{Name: "pcpu_s", Addr: 256, TypeID: 7}}, []DWARFFunction{{Name: "f", Addr: 0x1000, Static: true}})
	if err != nil || len(s.Skipped) != 0 {
		t.Fatal(err, s.Skipped)
	}
	d, err := genDWARFData(s)
	if err != nil {
		t.Fatal(err)
	}
	byOff, err := checkRefs(d)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, e := range byOff {
		if e.Tag == dwarf.TagSubprogram || e.Tag == dwarf.TagVariable {
			tags = append(tags, fmt.Sprintf("%s %v ext %v", e.Tag, e.Val(dwarf.AttrName), e.Val(dwarf.AttrExternal)))
		}
	}
	sort.Strings(tags)
	if got := strings.Join(tags, "|"); got != "Subprogram f ext <nil>|Variable pcpu_s ext true" {
		t.Errorf("got %s", got)
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == dwarf.TagStructType {
			ty, err := d.Type(e.Offset)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fieldsOf(ty.(*dwarf.StructType)), "a void; b void; c *int"; got != want {
				t.Errorf("struct s: %s, want %s", got, want)
			}
		}
	}
}

// cyclesBTF has loops of typedefs, qualifiers and arrays, a type tag, an
// id out of range and a per-CPU variable.
func cyclesBTF() []byte {
	bb := &btfBuilder{strs: []byte{0}}
	i32 := bb.typ("int", BTF_KIND_INT, false, 0, 4, btfIntSigned<<24|32) // 1
	bb.typ("loop_a", BTF_KIND_TYPEDEF, false, 0, 3)                      // 2 → 3 → 2
	bb.typ("", BTF_KIND_CONST, false, 0, 2)                              // 3
	bb.typ("", BTF_KIND_ARRAY, false, 0, 0, 4, i32, 2)                   // 4: array of itself
	tag := bb.typ("rcu", BTF_KIND_TYPE_TAG, false, 0, i32)               // 5
	bb.typ("", BTF_KIND_PTR, false, 0, tag)                              // 6: int *
	bb.typ("s", BTF_KIND_STRUCT, false, 3, 16,                           // 7
		bb.str("a"), 2, 0, bb.str("b"), 4, 32, bb.str("c"), 6, 64)
	bb.typ("", BTF_KIND_PTR, false, 0, 999)                              // 8: out of range
	bb.typ("", BTF_KIND_FUNC_PROTO, false, 2, i32, bb.str("x"), 2, 0, 0) // 9: int (loop_a x, ...)
	bb.typ("pcpu_s", BTF_KIND_VAR, false, 0, 7, 1)                       // 10
	bb.typ("f", BTF_KIND_FUNC, false, 0, 9)                              // 11
	bb.typ("plain", BTF_KIND_VAR, false, 0, i32, 0)                      // 12: in no DATASEC
	bb.typ(".data..percpu", BTF_KIND_DATASEC, false, 2, 4096, 10, 256, 16, 999, 0, 4)
	return bb.bytes()
}

func fieldsOf(st *dwarf.StructType) string {
	var fs []string
	for _, f := range st.Field {
		fs = append(fs, f.Name+" "+f.Type.String())
	}
	return strings.Join(fs, "; ")
}

func TestBTFDWARFBound(t *testing.T) {
	b, err := ParseBTF(typegraphBTF())
	if err != nil {
		t.Fatal(err)
	}
	defer func(m int) { maxDWARFBytes = m }(maxDWARFBytes)
	maxDWARFBytes = 200
	if _, err := b.DWARF(nil, nil); !errors.Is(err, ErrDWARFTooLarge) {
		t.Errorf("over the bound: %v", err)
	}
}

func FuzzBTFDWARF(f *testing.F) {
	f.Add(sampleBTF())
	f.Add(wrappingBTF())
	f.Add(typegraphBTF())
	f.Add(cyclesBTF())
	for _, dir := range []string{"FuzzBTF", "FuzzBTFTypes"} {
		seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, s := range seeds {
			data, err := readCorpusBytes(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBTF(data)
		if err != nil {
			return
		}
		var vars []DWARFVariable
		for _, v := range b.Variables() {
			vars = append(vars, DWARFVariable{Name: v.Name, Addr: uint64(v.Offset), TypeID: v.Type})
		}
		vars = append(vars, DWARFVariable{Name: "p", TypeName: "struct thing **"}, DWARFVariable{Name: "q", TypeName: "thread_t"},
			DWARFVariable{Name: "r", TypeName: "struct thing *", File: "kernel/thing.c", Static: true})
		var funcs []DWARFFunction
		for id, ty := range b.types {
			if ty.kind == BTF_KIND_FUNC && len(funcs) < 64 {
				funcs = append(funcs, DWARFFunction{Name: ty.name, Addr: uint64(id) << 4, Size: 16})
			}
		}
		var s *DWARFSections
		if n := allocated(func() { s, err = b.DWARF(vars, funcs) }); n > 256*uint64(len(data))+1<<20 {
			t.Fatalf("generating from %d bytes allocated %d", len(data), n)
		}
		if err != nil {
			return
		}
		d, err := genDWARFData(s)
		if err != nil {
			t.Fatalf("debug/dwarf: %v", err)
		}
		byOff, err := checkRefs(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readTypes(d, byOff, 256); err != nil {
			t.Fatal(err)
		}
	})
}

// readTypes reads every type DIE (up to limit, if not 0) with
// debug/dwarf's Type, in offset order.
func readTypes(d *dwarf.Data, byOff map[dwarf.Offset]*dwarf.Entry, limit int) (int, error) {
	var offs []dwarf.Offset
	for off, e := range byOff {
		switch e.Tag {
		case dwarf.TagBaseType, dwarf.TagPointerType, dwarf.TagArrayType, dwarf.TagStructType, dwarf.TagUnionType,
			dwarf.TagEnumerationType, dwarf.TagTypedef, dwarf.TagConstType, dwarf.TagVolatileType,
			dwarf.TagRestrictType, dwarf.TagSubroutineType:
			offs = append(offs, off)
		}
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	if limit > 0 && len(offs) > limit {
		offs = offs[:limit]
	}
	for _, off := range offs {
		if _, err := d.Type(off); err != nil {
			return 0, fmt.Errorf("debug/dwarf: type at 0x%x: %v", off, err)
		}
	}
	return len(offs), nil
}

// readCorpusBytes reads a one-[]byte "go test fuzz v1" corpus file.
func readCorpusBytes(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(raw))
	_, rest, ok := strings.Cut(s, "\n[]byte(")
	if !ok || !strings.HasSuffix(rest, ")") {
		return nil, fmt.Errorf("%s: not a []byte corpus file", path)
	}
	q, err := strconv.Unquote(strings.TrimSuffix(rest, ")"))
	return []byte(q), err
}

// synthObject builds what the server will offer gdb for a dump without a
// vmlinux, here from a vmlinux's BTF and symbols: an ELF object with a
// NOBITS .text and .data..percpu where the vmlinux has them, DWARF from
// the BTF, every BTF function the vmlinux has a symbol for, every per-CPU
// variable, init_task and jiffies_64.
func synthObject(t *testing.T, v *Vmlinux, b *BTF) (obj []byte, s *DWARFSections, elapsed time.Duration) {
	t.Helper()
	text, percpu := v.elf.Section(".text"), v.elf.Section(".data..percpu")
	if text == nil || percpu == nil {
		t.Fatal("vmlinux has no .text or .data..percpu")
	}
	var funcs []DWARFFunction
	var syms []elfwrite.Symbol
	seen := map[string]bool{}
	for _, ty := range b.types {
		if ty.kind != BTF_KIND_FUNC || seen[ty.name] {
			continue
		}
		seen[ty.name] = true
		addr, size, err := v.Symbol(ty.name)
		if err != nil || addr < text.Addr || addr >= text.Addr+text.Size {
			continue
		}
		bind := elf.ST_BIND(v.syms[ty.name].Info)
		funcs = append(funcs, DWARFFunction{Name: ty.name, Addr: addr, Size: size, Static: bind == elf.STB_LOCAL})
		syms = append(syms, elfwrite.Symbol{Name: ty.name, Value: addr, Size: size, Type: elf.STT_FUNC, Bind: bind, Section: ".text"})
	}
	var vars []DWARFVariable
	nPerCPU := 0
	for _, bv := range b.Variables() {
		if bv.Section != ".data..percpu" {
			continue
		}
		// DATASEC offsets are the vmlinux's per-CPU symbol values.
		// (A name kallsyms has twice may be another variable's.)
		sym, ok := v.syms[bv.Name]
		if ok && int(sym.Section) < len(v.elf.Sections) && v.elf.Sections[sym.Section] == percpu && sym.Value != uint64(bv.Offset) {
			t.Errorf("per-CPU %s: BTF offset 0x%x, vmlinux symbol 0x%x", bv.Name, bv.Offset, sym.Value)
		}
		nPerCPU++
		vars = append(vars, DWARFVariable{Name: bv.Name, Addr: uint64(bv.Offset), TypeID: bv.Type})
		syms = append(syms, elfwrite.Symbol{Name: bv.Name, Value: uint64(bv.Offset), Size: uint64(bv.Size), Type: elf.STT_OBJECT, Bind: elf.STB_GLOBAL, Section: ".data..percpu"})
	}
	for _, x := range [][2]string{{"init_task", "struct task_struct"}, {"jiffies_64", "u64"}, {"init_mm", "struct mm_struct"}} {
		addr, size, err := v.Symbol(x[0])
		if err != nil {
			t.Fatal(err)
		}
		vars = append(vars, DWARFVariable{Name: x[0], Addr: addr, TypeName: x[1]})
		syms = append(syms, elfwrite.Symbol{Name: x[0], Value: addr, Size: size, Type: elf.STT_OBJECT, Bind: elf.STB_GLOBAL, Section: "*ABS*"})
	}
	if nPerCPU < 100 {
		t.Errorf("%d per-CPU variables in BTF", nPerCPU)
	}
	t.Logf("%d functions, %d per-CPU variables", len(funcs), nPerCPU)
	start := time.Now()
	s, err := b.DWARF(vars, funcs)
	elapsed = time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Skipped) != 0 {
		t.Errorf("skipped: %q", s.Skipped)
	}
	secs := []elfwrite.Section{
		{Name: ".text", Type: elf.SHT_NOBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: text.Addr, Size: text.Size, Align: 4096},
		{Name: ".data..percpu", Type: elf.SHT_NOBITS, Flags: elf.SHF_ALLOC | elf.SHF_WRITE, Addr: 0, Size: percpu.Size, Align: 4096},
		{Name: ".debug_abbrev", Type: elf.SHT_PROGBITS, Data: s.Abbrev},
		{Name: ".debug_info", Type: elf.SHT_PROGBITS, Data: s.Info},
		{Name: ".debug_str", Type: elf.SHT_PROGBITS, Flags: elf.SHF_MERGE | elf.SHF_STRINGS, Data: s.Str},
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].Value < syms[j].Value })
	obj, err = elfwrite.Write(secs, syms)
	if err != nil {
		t.Fatal(err)
	}
	return obj, s, elapsed
}

// ptypeKey is a line of gdb's ptype /o output reduced to what BTF and
// DWARF must agree on: the offset and size comment and the member's name.
func ptypeKey(line string) string {
	comment, rest := "", strings.TrimSpace(line)
	if i := strings.Index(line, "/*"); i >= 0 {
		if j := strings.Index(line[i:], "*/"); j >= 0 {
			comment = strings.Join(strings.Fields(line[i:i+j+2]), " ")
			rest = strings.TrimSpace(line[:i] + line[i+j+2:])
		}
	}
	return comment + " " + memberName(rest)
}

var (
	fnPtrName    = regexp.MustCompile(`\(\*+\s*([A-Za-z_][A-Za-z0-9_]*)\)`)
	bitfieldTail = regexp.MustCompile(`\s*:\s*\d+$`)
	arrayTail    = regexp.MustCompile(`(\[[^\]]*\])+$`)
)

func memberName(decl string) string {
	decl = strings.TrimSpace(decl)
	if strings.HasSuffix(decl, "{") {
		return "{"
	}
	decl = strings.TrimSuffix(decl, ";")
	prefix := ""
	if strings.HasPrefix(decl, "}") {
		prefix, decl = "} ", strings.TrimSpace(decl[1:])
	}
	if m := fnPtrName.FindStringSubmatch(decl); m != nil {
		return prefix + m[1]
	}
	decl = arrayTail.ReplaceAllString(bitfieldTail.ReplaceAllString(decl, ""), "")
	ids := identRE.FindAllString(decl, -1)
	if len(ids) == 0 {
		return prefix
	}
	return prefix + ids[len(ids)-1]
}

// gdbBlocks runs gdb -batch on file with each command after an echoed
// marker and returns each command's output.
func gdbBlocks(t *testing.T, file string, cmds []string) map[string]string {
	t.Helper()
	bin, err := exec.LookPath("gdb")
	if err != nil {
		t.Skip("no gdb")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-batch", "-nx"}
	for _, c := range cmds {
		args = append(args, "-ex", "echo @@@@ "+c+"\\n", "-ex", c)
	}
	cmd := exec.CommandContext(ctx, bin, append(args, file)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gdb %s: %v\n%s", file, err, out)
	}
	res := map[string]string{}
	cur := ""
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if c, ok := strings.CutPrefix(line, "@@@@ "); ok {
			cur = strings.TrimSuffix(c, "\n")
			continue
		}
		res[cur] += line
	}
	return res
}

// The object made from each fixture vmlinux's BTF is read by Go's
// debug/elf and debug/dwarf with every reference resolving, by readelf
// without a warning, and by gdb 13 as the vmlinux's own DWARF: the same
// ptype /o offsets, sizes and member names for struct task_struct, page,
// mm_struct and sk_buff, the same sizeof, prototypes for schedule and
// panic, per-CPU runqueues as a struct rq. Two builds give the same bytes.
func TestBTFDWARFObject(t *testing.T) {
	structs := []string{"struct task_struct", "struct page", "struct mm_struct", "struct sk_buff"}
	for _, set := range fixtures.Sets(t) {
		t.Run(set.Name, func(t *testing.T) {
			path := set.Path(t, "kernel", "vmlinux")
			v, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			b, err := v.BTF()
			if err != nil {
				t.Fatal(err)
			}
			obj, s, elapsed := synthObject(t, v, b)
			t.Logf("%d BTF types: .debug_info %d bytes, .debug_abbrev %d, .debug_str %d, in %v; object %d bytes",
				len(b.types), len(s.Info), len(s.Abbrev), len(s.Str), elapsed, len(obj))
			if again, _, _ := synthObject(t, v, b); !bytes.Equal(obj, again) {
				t.Error("two builds differ")
			}

			f, err := elf.NewFile(bytes.NewReader(obj))
			if err != nil {
				t.Fatal(err)
			}
			d, err := f.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			byOff, err := checkRefs(d)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if n, err := readTypes(d, byOff, 0); err != nil {
				t.Error(err)
			} else {
				t.Logf("debug/dwarf read %d types in %v", n, time.Since(start))
			}
			for off, e := range byOff {
				if e.Tag == dwarf.TagStructType && e.Val(dwarf.AttrName) == "task_struct" && e.Val(dwarf.AttrDeclaration) == nil {
					ty, err := d.Type(off)
					if err != nil {
						t.Fatal(err)
					}
					if n, _ := b.Sizeof("task_struct"); ty.Size() != int64(n) {
						t.Errorf("debug/dwarf: struct task_struct size %d, BTF %d", ty.Size(), n)
					}
				}
			}

			// VMCORE_SYNTH_DIR=dir keeps the objects (dir/synth-6.1.o, ...).
			dir := os.Getenv("VMCORE_SYNTH_DIR")
			if dir == "" {
				dir = t.TempDir()
			}
			objPath := filepath.Join(dir, "synth-"+set.Name+".o")
			if err := os.WriteFile(objPath, obj, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := exec.LookPath("readelf"); err == nil {
				start := time.Now()
				cmd := exec.Command("readelf", "--debug-dump=info", objPath)
				var stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = io.Discard, &stderr
				if err := cmd.Run(); err != nil || stderr.Len() != 0 {
					t.Errorf("readelf --debug-dump=info: %v\n%.2000s", err, stderr.String())
				}
				t.Logf("readelf --debug-dump=info: %v", time.Since(start))
			} else {
				t.Log("no readelf (binutils): not checked")
			}
			if testing.Short() {
				t.Skip("-short: no gdb")
			}

			common := []string{"p sizeof(struct task_struct)", "p sizeof(struct rq)"}
			for _, st := range structs {
				common = append(common, "ptype /o "+st)
			}
			start = time.Now()
			want := gdbBlocks(t, path, common)
			t.Logf("gdb on the vmlinux: %v", time.Since(start))
			start = time.Now()
			got := gdbBlocks(t, objPath, append(common, "ptype schedule", "whatis panic", "info functions ^panic$",
				"ptype runqueues", "whatis init_task", "whatis jiffies_64", "p &runqueues"))
			t.Logf("gdb on the object: %v", time.Since(start))

			for _, c := range common {
				if !strings.HasPrefix(c, "ptype") {
					if got[c] != want[c] || !strings.HasPrefix(got[c], "$") {
						t.Errorf("%s: %q, vmlinux %q", c, got[c], want[c])
					}
					continue
				}
				gl, wl := strings.Split(strings.TrimSpace(got[c]), "\n"), strings.Split(strings.TrimSpace(want[c]), "\n")
				if len(wl) < 50 {
					t.Fatalf("%s on the vmlinux: %d lines:\n%s", c, len(wl), want[c])
				}
				if len(gl) != len(wl) {
					t.Errorf("%s: %d lines, vmlinux %d", c, len(gl), len(wl))
				}
				bad, text := 0, 0
				for i := 0; i < len(gl) && i < len(wl); i++ {
					if gk, wk := ptypeKey(gl[i]), ptypeKey(wl[i]); gk != wk {
						if bad++; bad <= 10 {
							t.Errorf("%s: line %d: %q (%q), vmlinux %q (%q)", c, i+1, gl[i], gk, wl[i], wk)
						}
					} else if gl[i] != wl[i] {
						if text++; text <= 3 {
							t.Logf("%s: line %d: %q, vmlinux %q", c, i+1, gl[i], wl[i])
						}
					}
				}
				t.Logf("%s: %d lines, %d with other offsets, sizes or names, %d with other type text", c, len(wl), bad, text)
			}
			for c, re := range map[string]string{
				"ptype schedule":         `^type = void \(void\)\n$`,
				"whatis panic":           `^type = void \(const char \*, \.\.\.\)\n$`,
				"info functions ^panic$": `(?s)All functions matching regular expression "\^panic\$":\n\nFile <BTF>:\n\s*void panic\(const char \*, \.\.\.\);\n`,
				"ptype runqueues":        `^type = struct rq \{\n`,
				"whatis init_task":       `^type = struct task_struct\n$`,
				"whatis jiffies_64":      `^type = u64\n$`,
				"p &runqueues":           `^\$\d+ = \(struct rq \*\) 0x[0-9a-f]+ <runqueues>\n$`,
			} {
				if !regexp.MustCompile(re).MatchString(got[c]) {
					t.Errorf("%s: %q, want /%s/", c, got[c], re)
				}
			}
			if t.Failed() {
				t.Logf("gdb on the object, other output: %.3000s", got[""])
			}
		})
	}
}
