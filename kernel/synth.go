package kernel

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/elfwrite"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// ErrNoSymbolObject says why no symbol object can be made for gdb.
var ErrNoSymbolObject = errors.New("no symbol object from the dump")

// wellKnownGlobals are kernel globals BTF gives no variable record for
// (it describes only per-CPU variables) whose declared type is the same
// in every kernel that has them: gdb gets them typed, every other global
// stays a bare symbol that gdb asks a cast for.
//
// A file-static one names its file: gdb scripts find it as 'file'::name
// (the kernel's lx-dmesg reads 'printk.c'::prb).
var wellKnownGlobals = []struct{ name, typ, file string }{
	{"init_task", "struct task_struct", ""},
	{"init_mm", "struct mm_struct", ""},
	{"init_uts_ns", "struct uts_namespace", ""},
	{"init_pid_ns", "struct pid_namespace", ""},
	{"jiffies_64", "u64", ""},
	{"jiffies", "unsigned long", ""},
	{"nr_cpu_ids", "unsigned int", ""},
	{"max_pfn", "unsigned long", ""},
	{"totalram_pages", "atomic_long_t", ""},
	{"page_offset_base", "unsigned long", ""},
	{"vmalloc_base", "unsigned long", ""},
	{"vmemmap_base", "unsigned long", ""},
	{"tainted_mask", "unsigned long", ""},
	{"panic_cpu", "atomic_t", ""},
	{"sysctl_panic_on_oom", "int", ""},
	{"modules", "struct list_head", ""},
	{"slab_caches", "struct list_head", ""},
	{"vmap_area_list", "struct list_head", ""},
	{"init_cred", "struct cred", ""},
	{"prb", "struct printk_ringbuffer *", "kernel/printk/printk.c"},
	{"hrtimer_resolution", "unsigned int", ""},
	{"saved_command_line", "char *", ""},
	{"__cpu_online_mask", "struct cpumask", ""},
	{"__cpu_possible_mask", "struct cpumask", ""},
	{"__cpu_present_mask", "struct cpumask", ""},
	{"__cpu_active_mask", "struct cpumask", ""},
	{"clk_root_list", "struct hlist_head", ""},
	{"clk_orphan_list", "struct hlist_head", ""},
	{"iomem_resource", "struct resource", ""},
	{"ioport_resource", "struct resource", ""},
}

// symbolRange is one NOBITS section of the symbol object: an address
// range of the running kernel, named for gdb.
type symbolRange struct {
	name       string
	start, end uint64
	flags      elf.SectionFlag
}

// SymbolObject builds, for a dump read without its vmlinux, an ELF object
// gdb can load as the kernel's symbols: every kallsyms symbol (with sizes
// up to the next symbol) in NOBITS sections at the running kernel's
// addresses (per-CPU variables in .data..percpu at their offsets, as in a
// vmlinux), the modules' own kallsyms, and DWARF generated from the
// dump's BTF: every type, the functions with their prototypes, the
// per-CPU variables and a few well-known globals. Nothing in it is
// invented: a symbol kallsyms lacks, or a type BTF lacks, is absent.
func (k *Kernel) SymbolObject() ([]byte, []string, error) {
	ks, ok := k.Syms.(*symbols.Kallsyms)
	if !ok || k.Vmlinux != nil {
		return nil, nil, fmt.Errorf("%w: it is made only for a dump read without its vmlinux", ErrNoSymbolObject)
	}
	// Without BTF the object still names every symbol; gdb then has no
	// types (and says so for each value).
	btf, _ := k.Types.(*symbols.BTF)
	entries := ks.Entries()
	addr := func(name string) (uint64, bool) {
		a, err := ks.Address(name)
		return a, err == nil
	}
	var ranges []symbolRange
	text, ok1 := addr("_stext")
	etext, ok2 := addr("_etext")
	end, ok3 := addr("_end")
	if !ok1 || !ok2 || !ok3 || etext <= text || end <= etext {
		return nil, nil, fmt.Errorf("%w: kallsyms has no usable _stext, _etext, _end", ErrNoSymbolObject)
	}
	if t, ok := addr("_text"); ok && t < text {
		text = t
	}
	ranges = append(ranges, symbolRange{".text", text, etext, elf.SHF_ALLOC | elf.SHF_EXECINSTR})
	si, ok1 := addr("_sinittext")
	ei, ok2 := addr("_einittext")
	if ok1 && ok2 && si >= etext && ei > si && ei <= end {
		ranges = append(ranges, symbolRange{".data", etext, si, elf.SHF_ALLOC | elf.SHF_WRITE},
			symbolRange{".init.text", si, ei, elf.SHF_ALLOC | elf.SHF_EXECINSTR},
			symbolRange{".init.data", ei, end, elf.SHF_ALLOC | elf.SHF_WRITE})
	} else {
		ranges = append(ranges, symbolRange{".data", etext, end, elf.SHF_ALLOC | elf.SHF_WRITE})
	}
	if pe, ok := addr("__per_cpu_end"); ok && pe > 0 && pe < text {
		ranges = append(ranges, symbolRange{".data..percpu", 0, pe, elf.SHF_ALLOC | elf.SHF_WRITE})
	}
	mods, _ := k.Modules()
	for _, m := range mods {
		for i, r := range m.Regions {
			if r.Size == 0 {
				continue
			}
			// The module's own kallsyms gives functions only: each
			// region is code to gdb.
			ranges = append(ranges, symbolRange{fmt.Sprintf(".module.%s.%d", m.Name, i), r.Start, r.Start + r.Size, elf.SHF_ALLOC | elf.SHF_EXECINSTR})
		}
	}
	sort.SliceStable(ranges, func(i, j int) bool { return ranges[i].start < ranges[j].start })
	for i := 1; i < len(ranges); i++ {
		if ranges[i].start < ranges[i-1].end {
			return nil, nil, fmt.Errorf("%w: %s [%#x, %#x) overlaps %s", ErrNoSymbolObject, ranges[i].name, ranges[i].start, ranges[i].end, ranges[i-1].name)
		}
	}
	in := func(a uint64) int {
		i := sort.Search(len(ranges), func(i int) bool { return ranges[i].end > a })
		if i < len(ranges) && ranges[i].start <= a {
			return i
		}
		return -1
	}
	type sym struct {
		name string
		addr uint64
		typ  byte
	}
	var all []sym
	for _, e := range entries {
		all = append(all, sym{e.Name, e.Addr, e.Type})
	}
	for _, m := range mods {
		for _, s := range m.symbols {
			all = append(all, sym{s.name, s.addr, 't'})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].addr < all[j].addr })
	var syms []elfwrite.Symbol
	var funcs []symbols.DWARFFunction
	seen := map[string]bool{}
	for i, s := range all {
		r := in(s.addr)
		if r < 0 || s.name == "" || strings.ContainsRune(s.name, 0) {
			continue
		}
		// Its size: up to the next symbol at another address, in its range.
		next := ranges[r].end
		for j := i + 1; j < len(all); j++ {
			if all[j].addr > s.addr {
				next = min(next, all[j].addr)
				break
			}
		}
		es := elfwrite.Symbol{Name: s.name, Value: s.addr, Size: next - s.addr, Section: ranges[r].name, Bind: elf.STB_GLOBAL}
		switch s.typ {
		case 'T', 't', 'W', 'w':
			es.Type = elf.STT_FUNC
		case 'D', 'd', 'B', 'b', 'R', 'r', 'V', 'v':
			es.Type = elf.STT_OBJECT
		case 'A', 'a':
			// kallsyms marks per-CPU variables absolute: they are offsets.
			if ranges[r].name == ".data..percpu" {
				es.Type = elf.STT_OBJECT
			}
		default:
			es.Type = elf.STT_NOTYPE
		}
		if s.typ >= 'a' && s.typ <= 'z' {
			es.Bind = elf.STB_LOCAL
		}
		syms = append(syms, es)
		if es.Type == elf.STT_FUNC && ranges[r].flags&elf.SHF_EXECINSTR != 0 && !seen[s.name] {
			seen[s.name] = true
			funcs = append(funcs, symbols.DWARFFunction{Name: s.name, Addr: s.addr, Size: es.Size, Static: es.Bind == elf.STB_LOCAL})
		}
	}
	var notes []string
	var dw *symbols.DWARFSections
	if btf != nil {
		var err error
		if dw, notes, err = k.symbolDWARF(btf, funcs, addr); err != nil {
			return nil, nil, err
		}
	} else {
		notes = append(notes, fmt.Sprintf("symbols without types: %s", symbols.TypesName(k.Types)))
	}
	var secs []elfwrite.Section
	for _, r := range ranges {
		secs = append(secs, elfwrite.Section{Name: r.name, Type: elf.SHT_NOBITS, Flags: r.flags, Addr: r.start, Size: r.end - r.start, Align: 1})
	}
	if dw != nil {
		secs = append(secs,
			elfwrite.Section{Name: ".debug_abbrev", Type: elf.SHT_PROGBITS, Data: dw.Abbrev, Align: 1},
			elfwrite.Section{Name: ".debug_info", Type: elf.SHT_PROGBITS, Data: dw.Info, Align: 1},
			elfwrite.Section{Name: ".debug_str", Type: elf.SHT_PROGBITS, Flags: elf.SHF_MERGE | elf.SHF_STRINGS, Data: dw.Str, Align: 1})
	}
	obj, err := elfwrite.Write(secs, syms)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNoSymbolObject, err)
	}
	return obj, notes, nil
}

// symbolDWARF is the symbol object's DWARF from the dump's BTF: its types,
// the functions' prototypes, the per-CPU variables where BTF's
// .data..percpu places them, and the well-known globals.
func (k *Kernel) symbolDWARF(btf *symbols.BTF, funcs []symbols.DWARFFunction, addr func(string) (uint64, bool)) (*symbols.DWARFSections, []string, error) {
	var notes []string
	// Per-CPU variables where BTF's .data..percpu section places them.
	var vars []symbols.DWARFVariable
	for _, v := range btf.Variables() {
		if v.Section == ".data..percpu" {
			vars = append(vars, symbols.DWARFVariable{Name: v.Name, Addr: uint64(v.Offset), TypeID: v.Type})
		}
	}
	for _, g := range wellKnownGlobals {
		a, ok := addr(g.name)
		if !ok {
			continue
		}
		if _, err := btf.TypeID(strings.TrimRight(g.typ, " *")); err != nil {
			notes = append(notes, fmt.Sprintf("%s left untyped: %v", g.name, err))
			continue
		}
		vars = append(vars, symbols.DWARFVariable{Name: g.name, Addr: a, TypeName: g.typ, File: g.file, Static: g.file != ""})
	}
	// linux_banner[], as long as the string the dump holds there.
	if a, ok := addr("linux_banner"); ok {
		if b, err := k.readCString(a, 1024); err == nil && b != "" && len(b) < 1023 {
			vars = append(vars, symbols.DWARFVariable{Name: "linux_banner", Addr: a, TypeName: "char", Count: uint64(len(b) + 1)})
		}
	}
	// __per_cpu_offset[], as long as the dump says CPUs can be: what
	// per-CPU reads index (the kernel's gdb scripts' per_cpu() too).
	if a, ok := addr("__per_cpu_offset"); ok && len(k.CPUs) > 0 {
		vars = append(vars, symbols.DWARFVariable{Name: "__per_cpu_offset", Addr: a, TypeName: "unsigned long", Count: uint64(len(k.CPUs))})
	}
	dw, err := btf.DWARF(vars, funcs)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: DWARF from BTF: %v", ErrNoSymbolObject, err)
	}
	return dw, append(notes, dw.Skipped...), nil
}
