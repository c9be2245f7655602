package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
)

// Module is one loaded kernel module.
type Module struct {
	Addr     uint64 // struct module
	Name     string
	State    string // live, coming, going, unformed
	Base     uint64 // core text base
	Size     uint64 // core size (all core regions on 6.4+)
	TextSize uint64
	// Regions are the module's memory areas: one core_layout before 6.4,
	// separately allocated text, data, rodata, ... since.
	Regions  []Region
	Sections []ModuleSection // from sect_attrs, in the kernel's order
	// BuildID is the module's GNU build id (hex), read from its loaded
	// .note.gnu.build-id section; empty when the dump does not hold it.
	BuildID string
	symbols []moduleSym // from the module's own kallsyms, sorted
}

// Region is an address range [Start, Start+Size).
type Region struct{ Start, Size uint64 }

// Contains says whether addr is in one of the module's regions.
func (m *Module) Contains(addr uint64) bool {
	for _, r := range m.Regions {
		if addr >= r.Start && addr-r.Start < r.Size {
			return true
		}
	}
	return false
}

// ModuleSection is a loaded section's run-time address.
type ModuleSection struct {
	Name string
	Addr uint64
}

type moduleSym struct {
	addr uint64
	name string
}

// maxModules bounds the walk of the module list.
const maxModules = 1 << 16

// Modules returns the loaded modules, reading them once.
func (k *Kernel) Modules() ([]*Module, error) {
	k.modOnce.Do(func() { k.modules, k.modErr = k.loadModules() })
	return k.modules, k.modErr
}

func (k *Kernel) loadModules() ([]*Module, error) {
	b := k.Types
	head, err := k.Symbol("modules")
	if err != nil {
		return nil, err
	}
	listOff, err := b.Offset("module", "list")
	if err != nil {
		return nil, err
	}
	nameOff, err := b.Offset("module", "name")
	if err != nil {
		return nil, err
	}
	nameLen, err := k.arrayLen("module", "name", 1, 4096) // MODULE_NAME_LEN
	if err != nil {
		return nil, err
	}
	stateOff, _ := b.Offset("module", "state")
	states := map[int64]string{}
	if e, err := b.Enum("module_state"); err == nil {
		for n, v := range e {
			states[v] = strings.ToLower(strings.TrimPrefix(n, "MODULE_STATE_"))
		}
	}
	// Where the core text lives: core_layout (before 6.4) or mem[MOD_TEXT].
	var baseOff, sizeOff, textSizeOff uint64
	var memBase, memSizeOff, memSize, memCount uint64
	coreMem := map[uint64]bool{}
	if o, err := b.Offset("module", "core_layout.base"); err == nil {
		baseOff = o
		sizeOff, _ = b.Offset("module", "core_layout.size")
		textSizeOff, _ = b.Offset("module", "core_layout.text_size")
	} else if o, err := b.Offset("module", "mem"); err == nil {
		ms, err1 := b.Sizeof("module_memory")
		bo, err2 := b.Offset("module_memory", "base")
		so, err3 := b.Offset("module_memory", "size")
		n, err4 := k.arrayLen("module", "mem", 1, 1024)
		text, err5 := b.EnumValue("MOD_TEXT")
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, err
		}
		if text < 0 || uint64(text) >= n {
			return nil, fmt.Errorf("MOD_TEXT %d is outside module.mem[%d]", text, n)
		}
		memBase, memSizeOff, memSize, memCount = o+bo, o+so, ms, n
		baseOff = memBase + uint64(text)*ms
		textSizeOff = memSizeOff + uint64(text)*ms
		// SIZE (as crash shows it) sums the core regions: those of enum
		// mod_mem_type that are not MOD_INIT_*, which the kernel frees
		// after init.
		kinds, err := b.Enum("mod_mem_type")
		if err != nil {
			return nil, err
		}
		for name, v := range kinds {
			if v >= 0 && uint64(v) < memCount && !strings.HasPrefix(name, "MOD_INIT_") && name != "MOD_MEM_NUM_TYPES" {
				coreMem[uint64(v)] = true
			}
		}
	} else {
		return nil, fmt.Errorf("struct module has neither core_layout nor mem: an unknown layout")
	}
	var mods []*Module
	for p, err := k.listNext(head); p != head; p, err = k.listNext(p) {
		if err != nil {
			k.warn("module list: %v", err)
			break
		}
		if len(mods) >= maxModules {
			k.warn("module list: more than %d entries, stopped", maxModules)
			break
		}
		addr := p - listOff
		m := &Module{Addr: addr}
		name := make([]byte, nameLen)
		if err := k.Read(name, addr+nameOff); err != nil {
			k.warn("module at 0x%x: %v", addr, err)
			break
		}
		m.Name = strings.TrimRight(string(name[:indexZero(name)]), "\x00")
		if s, err := k.readU32(addr + stateOff); err == nil {
			m.State = states[int64(s)]
			if m.State == "" {
				m.State = fmt.Sprint(s)
			}
		}
		m.Base, _ = k.ReadU64(addr + baseOff)
		if memSize > 0 {
			// 6.4+: each region is its own allocation.
			for i := uint64(0); i < memCount; i++ {
				base, err1 := k.ReadU64(addr + memBase + i*memSize)
				size, err2 := k.readU32(addr + memSizeOff + i*memSize)
				if err1 != nil || err2 != nil || base == 0 || size == 0 {
					continue
				}
				m.Regions = append(m.Regions, Region{base, uint64(size)})
				if coreMem[i] {
					m.Size += uint64(size)
				}
			}
			v, _ := k.readU32(addr + textSizeOff)
			m.TextSize = uint64(v)
		} else {
			v, _ := k.readU32(addr + sizeOff)
			m.Size = uint64(v)
			t, _ := k.readU32(addr + textSizeOff)
			m.TextSize = uint64(t)
			m.Regions = []Region{{m.Base, m.Size}}
		}
		if err := k.moduleSections(m); err != nil {
			k.warn("module %s sections: %v", m.Name, err)
		}
		if err := k.moduleKallsyms(m); err != nil {
			k.warn("module %s symbols: %v", m.Name, err)
		}
		m.BuildID = k.moduleBuildID(m)
		mods = append(mods, m)
	}
	sort.SliceStable(mods, func(i, j int) bool { return mods[i].Base < mods[j].Base })
	return mods, nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// readCString reads a NUL-terminated string of at most max bytes.
func (k *Kernel) readCString(addr uint64, max int) (string, error) {
	buf := make([]byte, max)
	n, err := k.VM.Read(buf, addr)
	if n == 0 && err != nil {
		return "", err
	}
	return string(buf[:indexZero(buf[:n])]), nil
}

// moduleSections reads module->sect_attrs (the /sys/module/*/sections
// view): struct module_sect_attrs { grp; nsections; attrs[] } with each
// attr's name and address. The name is battr.attr.name where the attribute
// is a bin_attribute (5.8+), a plain name member before (4.18's
// module_sect_attr { mattr; name; address }).
func (k *Kernel) moduleSections(m *Module) error {
	b := k.Types
	saOff, err := b.Offset("module", "sect_attrs")
	if err != nil {
		return err
	}
	sa, err := k.ReadU64(m.Addr + saOff)
	if err != nil || sa == 0 {
		return err
	}
	nOff, err := b.Offset("module_sect_attrs", "nsections")
	if err != nil {
		return err
	}
	attrsOff, err := b.Offset("module_sect_attrs", "attrs")
	if err != nil {
		return err
	}
	attrSize, err := b.Sizeof("module_sect_attr")
	if err != nil {
		return err
	}
	nameOff, err := b.Offset("module_sect_attr", "battr.attr.name")
	if err != nil {
		var err2 error
		if nameOff, err2 = b.Offset("module_sect_attr", "name"); err2 != nil {
			return fmt.Errorf("struct module_sect_attr has neither battr.attr.name nor name: %w", errors.Join(err, err2))
		}
	}
	addrOff, err := b.Offset("module_sect_attr", "address")
	if err != nil {
		return err
	}
	n, err := k.readU32(sa + nOff)
	if err != nil {
		return err
	}
	if n > 1024 {
		return fmt.Errorf("%d sections", n)
	}
	for i := uint64(0); i < uint64(n); i++ {
		a := sa + attrsOff + i*attrSize
		np, err := k.ReadU64(a + nameOff)
		if err != nil {
			return err
		}
		name, err := k.readCString(np, 256)
		if err != nil {
			return err
		}
		addr, err := k.ReadU64(a + addrOff)
		if err != nil {
			return err
		}
		m.Sections = append(m.Sections, ModuleSection{name, addr})
	}
	return nil
}

// moduleBuildID reads the build id note the module loaded with (its
// .note.gnu.build-id section is allocated, so the kernel keeps it).
func (k *Kernel) moduleBuildID(m *Module) string {
	for _, s := range m.Sections {
		if s.Name != ".note.gnu.build-id" {
			continue
		}
		var hdr [12]byte
		if err := k.Read(hdr[:], s.Addr); err != nil {
			return ""
		}
		namesz := binary.LittleEndian.Uint32(hdr[0:])
		descsz := binary.LittleEndian.Uint32(hdr[4:])
		// A build id is 16 or 20 bytes; bound what is read.
		if namesz != 4 || descsz == 0 || descsz > 128 {
			return ""
		}
		note := make([]byte, 12+4+(descsz+3)&^3)
		if err := k.Read(note, s.Addr); err != nil {
			return ""
		}
		id, _ := symbols.GNUBuildID(note)
		return id
	}
	return ""
}

// moduleKallsyms reads the module's own symbol table (mod->kallsyms), so
// module addresses are named even without the .ko file.
func (k *Kernel) moduleKallsyms(m *Module) error {
	b := k.Types
	ksOff, err := b.Offset("module", "kallsyms")
	if err != nil {
		return err
	}
	ks, err := k.ReadU64(m.Addr + ksOff)
	if err != nil || ks == 0 {
		return err
	}
	symtabOff, err1 := b.Offset("mod_kallsyms", "symtab")
	numOff, err2 := b.Offset("mod_kallsyms", "num_symtab")
	strtabOff, err3 := b.Offset("mod_kallsyms", "strtab")
	if err1 != nil || err2 != nil || err3 != nil {
		return fmt.Errorf("struct mod_kallsyms: unknown layout")
	}
	symtab, _ := k.ReadU64(ks + symtabOff)
	num, _ := k.ReadU64(ks + numOff)
	strtab, _ := k.ReadU64(ks + strtabOff)
	if num > 1<<20 {
		return fmt.Errorf("%d symbols", num)
	}
	// Since the type letters got their own typetab (5.2), st_info is the
	// ELF one; before, the kernel overwrote st_info with nm's letter.
	_, terr := b.Offset("mod_kallsyms", "typetab")
	elfInfo := terr == nil
	const elfSymSize = 24 // Elf64_Sym: ELF's own layout
	data := make([]byte, num*elfSymSize)
	if err := k.Read(data, symtab); err != nil {
		return err
	}
	for i := uint64(0); i < num; i++ {
		s := data[i*elfSymSize:]
		nameIdx := binary.LittleEndian.Uint32(s)
		info := s[4]
		value := binary.LittleEndian.Uint64(s[8:])
		if value == 0 || (elfInfo && info&0xf != 2) || (!elfInfo && info|0x20 != 't') { // STT_FUNC, or nm's t/T
			continue
		}
		name, err := k.readCString(strtab+uint64(nameIdx), 128)
		if err != nil || name == "" {
			continue
		}
		m.symbols = append(m.symbols, moduleSym{value, name})
	}
	sort.Slice(m.symbols, func(i, j int) bool { return m.symbols[i].addr < m.symbols[j].addr })
	return nil
}

// inModules says whether addr lies in a module's core area (kallsyms
// would otherwise name it after the last kernel symbol below).
func (k *Kernel) inModules(addr uint64) bool {
	mods, _ := k.Modules()
	for _, m := range mods {
		if m.Contains(addr) {
			return true
		}
	}
	return false
}

// moduleSymbol names an address inside a module as "func+0xoff [mod]".
func (k *Kernel) moduleSymbol(addr uint64) string {
	mods, _ := k.Modules()
	for _, m := range mods {
		if !m.Contains(addr) {
			continue
		}
		i := sort.Search(len(m.symbols), func(i int) bool { return m.symbols[i].addr > addr }) - 1
		if i >= 0 {
			return fmt.Sprintf("%s+0x%x [%s]", m.symbols[i].name, addr-m.symbols[i].addr, m.Name)
		}
		return fmt.Sprintf("0x%x [%s]", addr, m.Name)
	}
	return ""
}

// addModuleORC adds each module's ORC table (mod->arch) to the unwinder.
func (k *Kernel) addModuleORC(u *unwind.Unwinder, mods []*Module) {
	b := k.Types
	numOff, err1 := b.Offset("module", "arch.num_orcs")
	ipOff, err2 := b.Offset("module", "arch.orc_unwind_ip")
	unwOff, err3 := b.Offset("module", "arch.orc_unwind")
	if err1 != nil || err2 != nil || err3 != nil {
		return
	}
	ver, err := unwind.ORCVersionOf(k.orcHeader(), k.Info.OSRelease)
	if err != nil {
		return
	}
	for _, m := range mods {
		n, err := k.readU32(m.Addr + numOff)
		if err != nil || n == 0 || n > 1<<20 {
			continue
		}
		ipAddr, _ := k.ReadU64(m.Addr + ipOff)
		unwAddr, _ := k.ReadU64(m.Addr + unwOff)
		ips := make([]byte, 4*n)
		ents := make([]byte, 6*n)
		if k.Read(ips, ipAddr) != nil || k.Read(ents, unwAddr) != nil {
			k.warn("module %s: ORC tables unreadable", m.Name)
			continue
		}
		t, err := unwind.ParseORC(m.Name, ver, ips, ipAddr, ents)
		if err != nil {
			k.warn("module %s: %v", m.Name, err)
			continue
		}
		u.Tables = append(u.Tables, unwind.TableRange{Table: t, Start: m.Base, End: m.Base + max(m.TextSize, 1)})
	}
}
