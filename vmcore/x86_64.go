package vmcore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// StartKernelMap is __START_KERNEL_map, where x86_64 maps the kernel
// image (physical phys_base upward). It is part of the architecture's
// fixed layout: KASLR moves the image inside this window, never the window.
const StartKernelMap = 0xffffffff80000000

// Page-table entry bits (arch/x86/include/asm/pgtable_types.h).
const (
	_PAGE_PRESENT = 1 << 0
	_PAGE_PSE     = 1 << 7
	// Physical address bits 12..51 of an entry (__PHYSICAL_MASK_SHIFT 52).
	pteAddrMask = 0x000ffffffffff000
	cr3PCIDMask = 0xfff
	cr4LA57     = 1 << 12
)

// Level names a page-table level.
type Level int

const (
	LevelNone Level = iota
	LevelPTE
	LevelPMD
	LevelPUD
	LevelP4D
	LevelPGD
)

func (l Level) String() string {
	switch l {
	case LevelPTE:
		return "PTE"
	case LevelPMD:
		return "PMD"
	case LevelPUD:
		return "PUD"
	case LevelP4D:
		return "P4D"
	case LevelPGD:
		return "PGD"
	}
	return "none"
}

// PhysReader reads physical memory; *Dump is one.
type PhysReader interface {
	ReadPhys(p []byte, addr uint64) (int, error)
}

// Translation is where a virtual address lives.
type Translation struct {
	Phys     uint64
	PageSize uint64 // 4 KiB, 2 MiB or 1 GiB
}

// PageTable is an address space defined by one page-table root: the
// kernel's (init_top_pgt) or a task's (mm->pgd). Walks are at most five
// reads deep, so a looping or garbage table ends in an error, not a hang.
type PageTable struct {
	mem      PhysReader
	root     uint64
	levels   int
	addrMask uint64

	mu  sync.Mutex
	tlb [tlbSize]tlbEntry
}

const tlbSize = 1024

type tlbEntry struct {
	vpn   uint64 // va >> 12, +1 so that zero means empty
	phys  uint64 // physical address of the 4 KiB page
	psize uint64
}

// NewPageTable returns the address space rooted at the physical address
// root, with 4- or 5-level paging; smeMask is stripped from every entry.
func NewPageTable(mem PhysReader, root uint64, levels int, smeMask uint64) (*PageTable, error) {
	if levels != 4 && levels != 5 {
		return nil, fmt.Errorf("%d-level paging is not x86_64's", levels)
	}
	return &PageTable{mem: mem, root: root &^ 0xfff &^ smeMask, levels: levels, addrMask: pteAddrMask &^ smeMask}, nil
}

// Root returns the physical address of the top-level table.
func (pt *PageTable) Root() uint64 { return pt.root }

// Levels returns 4 or 5.
func (pt *PageTable) Levels() int { return pt.levels }

func (pt *PageTable) canonical(va uint64) bool {
	bits := uint(48)
	if pt.levels == 5 {
		bits = 57
	}
	top := int64(va) >> (bits - 1)
	return top == 0 || top == -1
}

// Translate walks the page table for va, consulting a small cache first.
func (pt *PageTable) Translate(va uint64) (Translation, error) {
	vpn := va >> 12
	slot := &pt.tlb[vpn%tlbSize]
	pt.mu.Lock()
	e := *slot
	pt.mu.Unlock()
	if e.vpn == vpn+1 {
		return Translation{Phys: e.phys | va&0xfff, PageSize: e.psize}, nil
	}
	t, err := pt.Walk(va)
	if err != nil {
		return t, err
	}
	pt.mu.Lock()
	*slot = tlbEntry{vpn: vpn + 1, phys: t.Phys &^ 0xfff, psize: t.PageSize}
	pt.mu.Unlock()
	return t, nil
}

// Walk translates va by reading the tables, without the cache.
func (pt *PageTable) Walk(va uint64) (Translation, error) {
	if !pt.canonical(va) {
		return Translation{}, &TranslateError{Addr: va, Err: fmt.Errorf("%w: non-canonical address for %d-level paging", ErrNotMapped, pt.levels)}
	}
	table := pt.root
	var buf [8]byte
	for lvl := pt.levels; lvl >= 1; lvl-- {
		level := levelAt(lvl, pt.levels)
		shift := uint(12 + 9*(lvl-1))
		idx := (va >> shift) & 511
		entryAddr := table + idx*8
		if _, err := pt.mem.ReadPhys(buf[:], entryAddr); err != nil {
			return Translation{}, &TranslateError{Addr: va, Level: level, Err: err}
		}
		entry := binary.LittleEndian.Uint64(buf[:])
		if entry&_PAGE_PRESENT == 0 {
			return Translation{}, &TranslateError{Addr: va, Level: level, Entry: entry, Err: ErrNotMapped}
		}
		if (lvl == 2 || lvl == 3) && entry&_PAGE_PSE != 0 {
			size := uint64(1) << shift
			return Translation{Phys: entry&pt.addrMask&^(size-1) | va&(size-1), PageSize: size}, nil
		}
		table = entry & pt.addrMask
	}
	return Translation{Phys: table | va&0xfff, PageSize: 4096}, nil
}

func levelAt(lvl, levels int) Level {
	switch lvl {
	case 1:
		return LevelPTE
	case 2:
		return LevelPMD
	case 3:
		return LevelPUD
	case 4:
		if levels == 5 {
			return LevelP4D
		}
		return LevelPGD
	}
	return LevelPGD
}

// Read reads virtual memory through this page table.
func (pt *PageTable) Read(p []byte, va uint64) (int, error) {
	return readVirt(pt.Translate, pt.mem, p, va)
}

func readVirt(translate func(uint64) (Translation, error), mem PhysReader, p []byte, va uint64) (int, error) {
	done := 0
	for done < len(p) {
		t, err := translate(va)
		if err != nil {
			return done, err
		}
		n := min(uint64(len(p)-done), 4096-va%4096)
		if _, err := mem.ReadPhys(p[done:done+int(n)], t.Phys); err != nil {
			return done, fmt.Errorf("virtual address 0x%x: %w", va, err)
		}
		done += int(n)
		va += n
	}
	return done, nil
}

// Kernel is the kernel's virtual address space in a dump: the page table
// rooted at init_top_pgt, plus arithmetic fast paths for the kernel image
// and the direct map once they are known and checked against the tables.
type Kernel struct {
	*PageTable
	dump *Dump

	physBase     uint64
	havePhysBase bool
	imageSize    uint64 // 0: no image fast path
	directBase   uint64
	directSize   uint64 // 0: no direct-map fast path

	// RootSource says where the page-table root came from.
	RootSource string
	// Notes are remarks on fallbacks taken while setting up translation.
	Notes []string
}

// Kernel sets up kernel address translation. The root comes from
// VMCOREINFO alone when it can (SYMBOL(init_top_pgt) or swapper_pg_dir,
// minus __START_KERNEL_map, plus phys_base), so dumps without virtual
// addresses work; otherwise from CR3 in QEMU's CPU notes.
func (d *Dump) Kernel() (*Kernel, error) {
	k := &Kernel{dump: d}
	info, _ := d.VMCOREINFO()
	levels := 4
	var sme uint64
	levelSrc := "default"
	if info != nil {
		sme = info.SMEMask
		if info.HasPgtableL5 {
			levelSrc = "VMCOREINFO"
			if info.PgtableL5 {
				levels = 5
			}
		}
	}
	qemu := d.QEMUCPUs()
	if levelSrc == "default" && len(qemu) > 0 {
		levelSrc = "CR4 of CPU 0"
		if qemu[0].CR[4]&cr4LA57 != 0 {
			levels = 5
		}
	}

	// phys_base: VMCOREINFO, else the ELF kernel-text PT_LOAD, else the
	// kdump sub-header.
	if info != nil && info.HasPhysBase {
		k.physBase, k.havePhysBase = info.PhysBase, true
	} else if d.elf != nil {
		for _, g := range d.elf.segments {
			if g.VAddr >= StartKernelMap && g.VAddr != g.PAddr {
				k.physBase, k.havePhysBase = g.PAddr-(g.VAddr-StartKernelMap), true
				k.Notes = append(k.Notes, "phys_base taken from the kernel-text PT_LOAD (VMCOREINFO has no NUMBER(phys_base))")
				break
			}
		}
	} else if d.parts != nil && d.parts[0].sub.PhysBase != 0 {
		k.physBase, k.havePhysBase = d.parts[0].sub.PhysBase, true
		k.Notes = append(k.Notes, "phys_base taken from the kdump sub-header")
	}

	var root uint64
	found := false
	if info != nil && k.havePhysBase {
		for _, sym := range []string{"init_top_pgt", "swapper_pg_dir", "init_level4_pgt"} {
			if a, ok := info.Symbol(sym); ok && a >= StartKernelMap {
				root = a - StartKernelMap + k.physBase
				k.RootSource = fmt.Sprintf("VMCOREINFO SYMBOL(%s)=0x%x", sym, a)
				found = true
				break
			}
		}
	}
	if !found && len(qemu) > 0 {
		root = k.rootFromCR3(qemu, sme)
		found = true
	}
	if !found {
		why := "the dump has no VMCOREINFO"
		if info != nil {
			why = "VMCOREINFO names no page-table root (init_top_pgt/swapper_pg_dir) or no phys_base"
		}
		return nil, fmt.Errorf("%s: cannot find the kernel page tables: %s and no QEMU CPU note carries CR3", d.files[0], why)
	}
	pt, err := NewPageTable(d, root, levels, sme)
	if err != nil {
		return nil, err
	}
	k.PageTable = pt
	if levelSrc == "default" {
		k.Notes = append(k.Notes, "paging levels unknown (no NUMBER(pgtable_l5_enabled), no CR4): assuming 4")
	}

	// Kernel image fast path, if the arithmetic matches a real walk of a
	// kernel-image address (the root symbol's own).
	if k.havePhysBase && info != nil {
		size := uint64(512 << 20)
		if n, ok := info.Number("KERNEL_IMAGE_SIZE"); ok && n > 0 {
			size = uint64(n)
		}
		if a, ok := info.Symbol("_stext"); ok {
			if t, err := pt.Walk(a); err == nil && t.Phys == a-StartKernelMap+k.physBase {
				k.imageSize = size
			}
		}
	}
	// Direct map fast path from an ELF dump's RAM PT_LOADs (p_vaddr =
	// __va(p_paddr)), when a walk agrees.
	if d.elf != nil {
		for _, g := range d.elf.segments {
			if g.VAddr != 0 && g.VAddr != g.PAddr && g.VAddr < StartKernelMap && g.VAddr > g.PAddr {
				if k.SetDirectMap(g.VAddr-g.PAddr) == nil {
					break
				}
			}
		}
	}
	return k, nil
}

// rootFromCR3 is the fallback when VMCOREINFO cannot name the root: CPU 0's
// CR3. With PTI a CPU in user mode runs on the user half of an 8 KiB PGD
// pair (bit 12 set), which lacks most kernel mappings; pick the table with
// more kernel-half entries present.
func (k *Kernel) rootFromCR3(qemu []QEMUCPUState, sme uint64) uint64 {
	cr3 := qemu[0].CR[3] &^ cr3PCIDMask &^ sme
	root := cr3
	if cr3&(1<<12) != 0 {
		alt := cr3 &^ (1 << 12)
		if k.kernelHalfEntries(alt) > k.kernelHalfEntries(cr3) {
			root = alt
		}
	}
	k.RootSource = fmt.Sprintf("CR3 0x%x of CPU 0 (QEMU note)", qemu[0].CR[3])
	k.Notes = append(k.Notes, "VMCOREINFO lacks the page-table root or phys_base: using CR3 from the QEMU CPU note, as crash does")
	return root
}

func (k *Kernel) kernelHalfEntries(table uint64) int {
	buf := make([]byte, 4096)
	if _, err := k.dump.ReadPhys(buf, table); err != nil {
		return -1
	}
	n := 0
	for i := 256; i < 512; i++ {
		if binary.LittleEndian.Uint64(buf[i*8:])&_PAGE_PRESENT != 0 {
			n++
		}
	}
	return n
}

// PhysBase returns phys_base, the physical address the kernel image was
// loaded at relative to its link address.
func (k *Kernel) PhysBase() (uint64, bool) { return k.physBase, k.havePhysBase }

// DirectMap returns the direct map's base (page_offset_base) if known.
func (k *Kernel) DirectMap() (uint64, bool) { return k.directBase, k.directSize != 0 }

// SetDirectMap enables the direct-map fast path at base (the value of the
// kernel's page_offset_base). It is refused unless a page-table walk of
// base + the root table's own address lands on that table.
func (k *Kernel) SetDirectMap(base uint64) error {
	probe := base + k.root
	t, err := k.PageTable.Walk(probe)
	if err != nil {
		return fmt.Errorf("direct map base 0x%x: %w", base, err)
	}
	if t.Phys != k.root {
		return fmt.Errorf("direct map base 0x%x: 0x%x translates to 0x%x, not 0x%x", base, probe, t.Phys, k.root)
	}
	k.directBase = base
	// The direct map spans at most 2^MAX_PHYSMEM_BITS bytes (46 with
	// 4-level paging, 52 with 5); past it lie vmalloc and vmemmap, which
	// only the page tables translate, whatever size the dump claims.
	limit := uint64(1) << 46
	if k.levels == 5 {
		limit = 1 << maxPhysAddrBits
	}
	k.directSize = min(k.dump.MaxPFN(), limit/k.dump.PageSize()) * k.dump.PageSize()
	return nil
}

// Translate maps a kernel virtual address to a physical one.
func (k *Kernel) Translate(va uint64) (Translation, error) {
	if k.imageSize != 0 && va >= StartKernelMap && va-StartKernelMap < k.imageSize {
		return Translation{Phys: va - StartKernelMap + k.physBase, PageSize: 4096}, nil
	}
	if k.directSize != 0 && va >= k.directBase && va-k.directBase < k.directSize {
		return Translation{Phys: va - k.directBase, PageSize: 4096}, nil
	}
	return k.PageTable.Translate(va)
}

// Read reads kernel virtual memory.
func (k *Kernel) Read(p []byte, va uint64) (int, error) {
	return readVirt(k.Translate, k.dump, p, va)
}

// UserSpace returns the address space of a task whose mm->pgd is the
// kernel virtual address pgd (a direct-map address).
func (k *Kernel) UserSpace(pgd uint64) (*PageTable, error) {
	t, err := k.Translate(pgd)
	if err != nil {
		return nil, fmt.Errorf("mm->pgd 0x%x: %w", pgd, err)
	}
	return NewPageTable(k.dump, t.Phys, k.levels, k.sme())
}

func (k *Kernel) sme() uint64 { return pteAddrMask &^ k.addrMask }

// IsNotMapped reports whether err means the address has no mapping.
func IsNotMapped(err error) bool { return errors.Is(err, ErrNotMapped) }
