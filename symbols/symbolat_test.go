package symbols

import (
	"debug/elf"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// Several symbols at one address (a syscall's __x64_sys_, __ia32_sys_ and
// __do_sys_ names) must give the same name every run, and the one the
// kernel's traces print: a global before a local.
func TestSymbolAtAliases(t *testing.T) {
	for _, set := range fixtures.Sets(t) {
		t.Run(set.Name, func(t *testing.T) {
			path := set.Path(t, "kernel", "vmlinux")
			ef, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			syms, err := ef.Symbols()
			ef.Close()
			if err != nil {
				t.Fatal(err)
			}
			byAddr := map[uint64][]elf.Symbol{}
			for _, s := range syms {
				// (__pfx_ symbols are the padding before 6.2+ functions,
				// never a name a trace prints.)
				if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 && s.Value != 0 && !strings.HasPrefix(s.Name, "__pfx_") {
					byAddr[s.Value] = append(byAddr[s.Value], s)
				}
			}
			aliases := map[uint64][]elf.Symbol{}
			for a, g := range byAddr {
				if len(g) > 1 {
					aliases[a] = g
				}
			}
			if len(aliases) < 20 { // the SYSCALL_DEFINE0 wrappers alone are some 40
				t.Fatalf("only %d addresses with several function symbols", len(aliases))
			}
			var first map[uint64]string
			for run := 0; run < 3; run++ {
				v, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				got := map[uint64]string{}
				for a := range aliases {
					got[a], _, _ = v.SymbolAt(a)
				}
				v.Close()
				if first == nil {
					first = got
					continue
				}
				for a, n := range got {
					if first[a] != n {
						t.Fatalf("0x%x: %q, then %q", a, first[a], n)
					}
				}
			}
			for a, g := range aliases {
				best := 2
				var chosen elf.Symbol
				for _, s := range g {
					best = min(best, bindRank(s))
					if s.Name == first[a] {
						chosen = s
					}
				}
				if chosen.Name == "" || bindRank(chosen) != best {
					t.Errorf("0x%x: %q of %v", a, first[a], g)
				}
			}
			v, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			a, _, err := v.Symbol("__x64_sys_pause")
			if err != nil {
				t.Fatal(err)
			}
			if n, off, _ := v.SymbolAt(a + 4); n != "__x64_sys_pause" || off != 4 {
				t.Errorf("0x%x+4 is %s+%d, want __x64_sys_pause+4", a, n, off)
			}
		})
	}
}
