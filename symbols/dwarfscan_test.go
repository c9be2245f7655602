package symbols

import (
	"debug/dwarf"
	"fmt"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// referenceIndex builds the name index with debug/dwarf, one unit after
// another, by the rules DWARFTypes documents: the scanner must give the
// same index.
func referenceIndex(d *dwarf.Data) (*dwarfNameIndex, error) {
	ix := &dwarfNameIndex{structs: map[string]dwarf.Offset{}, enums: map[string]dwarf.Offset{}, typedef: map[string]dwarf.Offset{}, values: map[string]int64{}}
	empty := map[string]dwarf.Offset{}
	r := d.Reader()
	for {
		cu, err := r.Next()
		if err != nil {
			return nil, err
		}
		if cu == nil {
			break
		}
		if !cu.Children {
			continue
		}
		for {
			e, err := r.Next()
			if err != nil {
				return nil, err
			}
			if e == nil || e.Tag == 0 {
				break
			}
			name, _ := e.Val(dwarf.AttrName).(string)
			decl, _ := e.Val(dwarf.AttrDeclaration).(bool)
			switch {
			case decl:
			case e.Tag == dwarf.TagStructType || e.Tag == dwarf.TagUnionType:
				if name == "" {
					break
				}
				if _, ok := ix.structs[name]; !ok && e.Children {
					ix.structs[name] = e.Offset
				} else if _, ok := empty[name]; !ok && !e.Children {
					empty[name] = e.Offset
				}
			case e.Tag == dwarf.TagTypedef:
				if _, ok := ix.typedef[name]; !ok && name != "" {
					ix.typedef[name] = e.Offset
				}
			case e.Tag == dwarf.TagEnumerationType && e.Children:
				if _, seen := ix.enums[name]; seen && name != "" {
					break
				}
				if name != "" {
					ix.enums[name] = e.Offset
				}
				for {
					c, err := r.Next()
					if err != nil {
						return nil, err
					}
					if c == nil || c.Tag == 0 {
						break
					}
					if c.Tag == dwarf.TagEnumerator {
						n, _ := c.Val(dwarf.AttrName).(string)
						if v, ok := constant(c.Val(dwarf.AttrConstValue)); ok && n != "" {
							if _, dup := ix.values[n]; !dup {
								ix.values[n] = v
							}
						}
					}
					if c.Children {
						r.SkipChildren()
					}
				}
				continue
			}
			if e.Children {
				r.SkipChildren()
			}
		}
	}
	for k, v := range empty {
		if _, ok := ix.structs[k]; !ok {
			ix.structs[k] = v
		}
	}
	return ix, nil
}

// diffIndex lists the differences between two indexes (at most 20).
func diffIndex(got, want *dwarfNameIndex) []string {
	var out []string
	offs := func(kind string, g, w map[string]dwarf.Offset) {
		for k, v := range w {
			if gv, ok := g[k]; !ok || gv != v {
				out = append(out, fmt.Sprintf("%s %s: scanner 0x%x (%v), debug/dwarf 0x%x", kind, k, gv, ok, v))
			}
		}
		for k, v := range g {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s %s: scanner 0x%x, debug/dwarf has none", kind, k, v))
			}
		}
	}
	offs("struct", got.structs, want.structs)
	offs("enum", got.enums, want.enums)
	offs("typedef", got.typedef, want.typedef)
	for k, v := range want.values {
		if gv, ok := got.values[k]; !ok || gv != v {
			out = append(out, fmt.Sprintf("enumerator %s: scanner %d (%v), debug/dwarf %d", k, gv, ok, v))
		}
	}
	for k, v := range got.values {
		if _, ok := want.values[k]; !ok {
			out = append(out, fmt.Sprintf("enumerator %s: scanner %d, debug/dwarf has none", k, v))
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... %d more", len(out)-20))
	}
	return out
}

func checkIndex(t *testing.T, d *DWARFTypes) {
	t.Helper()
	data, err := d.newData(d.scan.info)
	if err != nil {
		t.Fatal(err)
	}
	want, err := referenceIndex(data)
	if err != nil {
		t.Fatalf("debug/dwarf: %v", err)
	}
	if err := d.index(); err != nil {
		t.Fatalf("scanner: %v", err)
	}
	for _, m := range diffIndex(d.ix, want) {
		t.Error(m)
	}
	t.Logf("%d structs, %d enums, %d typedefs, %d enumerators", len(want.structs), len(want.enums), len(want.typedef), len(want.values))
}

// TestDWARFScanObjects: the scanner's index equals debug/dwarf's on the
// gcc objects of typesC, DWARF 4 and 5, with and without optimisation.
func TestDWARFScanObjects(t *testing.T) {
	for _, flags := range [][]string{{"-gdwarf-4"}, {"-gdwarf-5"}, {"-gdwarf-5", "-O2"}, {"-gdwarf-4", "-fno-eliminate-unused-debug-types"}} {
		t.Run(fmt.Sprint(flags), func(t *testing.T) {
			obj, _ := compileTypes(t, flags...)
			d := dwarfOf(t, obj)
			checkIndex(t, d)
			if len(d.ix.structs) < 3 || len(d.ix.values) < 6 {
				t.Errorf("index too small to mean anything: %d structs, %d enumerators", len(d.ix.structs), len(d.ix.values))
			}
		})
	}
}

// TestDWARFScanVmlinux: on the 6.1 vmlinux the scanner's index equals
// debug/dwarf's for every name (so for every name the model asks about).
// debug/dwarf takes seconds here; -short skips it.
func TestDWARFScanVmlinux(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	v, err := Open(fixtures.Path(t, "kernel", "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	d, err := v.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	checkIndex(t, d)
}

// BenchmarkDWARFOpenReady is the DWARF source's cost from opening the
// 6.1 vmlinux to answering the first layout questions the model asks
// (VMCORE_GDBSERVER_TYPES=dwarf on a kernel's load).
func BenchmarkDWARFOpenReady(b *testing.B) {
	path := fixtures.Path(b, "kernel", "vmlinux")
	for b.Loop() {
		v, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		d, err := v.DWARF()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Offset("task_struct", "tasks"); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Offset("task_struct", "thread.sp"); err != nil {
			b.Fatal(err)
		}
		if _, err := d.EnumValue("NR_FILE_PAGES"); err != nil {
			b.Fatal(err)
		}
		v.Close()
	}
}
