package kernel

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// The symbol object of a dump read without its vmlinux: the same bytes
// every build; valid ELF and DWARF to binutils' readelf; panic a sized
// global function at its kallsyms address in .text, runqueues a per-CPU
// object at its offset, module functions in their module's section;
// init_task and runqueues typed variables in the DWARF.
func TestSymbolObject(t *testing.T) {
	for _, set := range fixtures.Sets(t) {
		t.Run(set.Name, func(t *testing.T) {
			d, err := vmcore.Open(set.Path(t, "oom", "vmcore.elf"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			k, err := LoadFromDump(d)
			if err != nil {
				t.Fatal(err)
			}
			obj, _, err := k.SymbolObject()
			if err != nil {
				t.Fatal(err)
			}
			again, _, err := k.SymbolObject()
			if err != nil || !bytes.Equal(obj, again) {
				t.Errorf("two builds differ (%v)", err)
			}
			f, err := elf.NewFile(bytes.NewReader(obj))
			if err != nil {
				t.Fatal(err)
			}
			syms, err := f.Symbols()
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]elf.Symbol{}
			modFuncs := 0
			for _, s := range syms {
				byName[s.Name] = s
				if int(s.Section) < len(f.Sections) && strings.HasPrefix(f.Sections[s.Section].Name, ".module.") {
					modFuncs++
				}
			}
			panicAddr, _ := k.Symbol("panic")
			p := byName["panic"]
			if p.Value != panicAddr || p.Size == 0 || elf.ST_TYPE(p.Info) != elf.STT_FUNC || f.Sections[p.Section].Name != ".text" {
				t.Errorf("panic: %+v (kallsyms %#x)", p, panicAddr)
			}
			rq, _ := k.Symbol("runqueues")
			r := byName["runqueues"]
			if r.Value != rq || elf.ST_TYPE(r.Info) != elf.STT_OBJECT || f.Sections[r.Section].Name != ".data..percpu" {
				t.Errorf("runqueues: %+v (kallsyms %#x)", r, rq)
			}
			if modFuncs < 20 {
				t.Errorf("%d module functions", modFuncs)
			}
			dw, err := f.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			vars := map[string]bool{}
			rd := dw.Reader()
			for {
				e, err := rd.Next()
				if err != nil {
					t.Fatal(err)
				}
				if e == nil {
					break
				}
				if e.Tag == dwarf.TagVariable && e.Val(dwarf.AttrLocation) != nil && e.Val(dwarf.AttrType) != nil {
					vars[e.Val(dwarf.AttrName).(string)] = true
				}
			}
			for _, v := range []string{"init_task", "runqueues", "jiffies_64"} {
				if !vars[v] {
					t.Errorf("no typed variable %s in the DWARF", v)
				}
			}
			path := filepath.Join(t.TempDir(), "kernel-symbols.elf")
			if err := os.WriteFile(path, obj, 0o600); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			c := exec.Command("readelf", "-a", "-W", "--debug-dump=info", path)
			c.Stdout, c.Stderr = nil, &stderr
			if err := c.Run(); err != nil || stderr.Len() > 0 {
				t.Errorf("readelf: %v: %s", err, stderr.String())
			}
			// gdb on the file alone: the function, its prototype and a
			// file-static variable's scope.
			if gdb, err := exec.LookPath("gdb"); err != nil {
				t.Errorf("gdb: %v", err)
			} else {
				out, err := exec.Command(gdb, "-q", "-batch", "-nx", "-ex", "info functions ^panic$", "-ex", "ptype panic",
					"-ex", "ptype 'printk.c'::prb", path).CombinedOutput()
				o := string(out)
				if err != nil || !strings.Contains(o, "panic(") || !strings.Contains(o, "type = void (const char *, ...)") ||
					!strings.Contains(o, "type = struct printk_ringbuffer {") || strings.Contains(o, "rror") {
					t.Errorf("gdb on the object alone (%v):\n%s", err, o)
				}
			}
			t.Logf("%s: symbol object %d bytes, %d symbols", set.Name, len(obj), len(syms))
		})
	}
}

// BenchmarkSymbolObject: the symbol object of the 6.1 oom dump read
// without its vmlinux (kallsyms, BTF, DWARF generation, ELF), per build.
func BenchmarkSymbolObject(b *testing.B) {
	set := fixtures.Sets(b)[0]
	d, err := vmcore.Open(set.Path(b, "oom", "vmcore.elf"))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	k, err := LoadFromDump(d)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		obj, _, err := k.SymbolObject()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(obj)))
	}
}
