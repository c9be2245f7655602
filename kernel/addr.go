package kernel

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// maxVmapAreas bounds the walk of the vmalloc areas.
const maxVmapAreas = 1 << 22

// AddrInfo is what kmem ADDR says about a kernel address: the memory it
// lies in and, for the direct map, its page and the slab object if any.
type AddrInfo struct {
	Addr   uint64 `json:"-"`
	Region string `json:"region"` // user, direct map, vmalloc, vmemmap, kernel image, module
	Symbol string `json:"symbol,omitempty"`
	Module string `json:"module,omitempty"`

	Phys    uint64 `json:"-"`
	HasPhys bool   `json:"-"`
	// Page is the struct page of the (physical) page, if known.
	Page      uint64   `json:"-"`
	PFN       uint64   `json:"pfn,omitempty"`
	PageFlags uint64   `json:"-"`
	FlagNames []string `json:"page_flags,omitempty"`

	Slab    *SlabObject  `json:"-"`
	Vmalloc *VmallocArea `json:"-"`
	// Stack names the task whose kernel stack holds the address.
	Stack *Task `json:"-"`
	// Unread says what could not be read about the address.
	Unread []string `json:"unread,omitempty"`
}

// SlabObject is the slab object an address lies in.
type SlabObject struct {
	Cache     SlabCache `json:"-"`
	Slab      uint64    `json:"-"` // struct slab (or page) of the slab
	Memory    uint64    `json:"-"` // the slab's first byte
	Object    uint64    `json:"-"` // the object's first byte
	Offset    uint64    `json:"offset"`
	Allocated bool      `json:"allocated"`
	// Objects and Free count the slab's objects and those free in it.
	Objects uint64 `json:"slab_objects"`
	Free    uint64 `json:"slab_free"`
	// FreeUnknown says a freelist could not be read: Allocated is then
	// only "not seen free".
	FreeUnknown string `json:"free_unknown,omitempty"`
}

// VmallocArea is one busy vmalloc/vmap area.
type VmallocArea struct {
	Area   uint64 `json:"-"` // struct vmap_area
	Start  uint64 `json:"-"`
	End    uint64 `json:"-"`
	VM     uint64 `json:"-"` // struct vm_struct, 0 for a bare vmap
	Caller string `json:"caller,omitempty"`
	Pages  uint64 `json:"pages,omitempty"`
}

// Locate says where addr lies.
func (k *Kernel) Locate(addr uint64) (*AddrInfo, error) {
	a := &AddrInfo{Addr: addr}
	if addr < 1<<63 {
		a.Region = "user"
		return a, nil
	}
	for _, t := range k.Tasks {
		if t.Stack != 0 && addr >= t.Stack && addr < t.Stack+k.stackSize() {
			a.Stack = t
			break
		}
	}
	if mods, err := k.Modules(); err == nil {
		for _, m := range mods {
			if m.Contains(addr) {
				a.Region, a.Module = "module", m.Name
				a.Symbol = k.SymbolName(addr)
				return a, nil
			}
		}
	}
	text, err1 := k.Symbol("_text")
	end, err2 := k.Symbol("_end")
	if err1 == nil && err2 == nil && addr >= text && addr < end {
		a.Region, a.Symbol = "kernel image", k.SymbolName(addr)
		if tr, err := k.VM.Translate(addr); err == nil {
			a.Phys, a.HasPhys = tr.Phys, true
		}
		return a, nil
	}
	m := k.memLayout()
	if m.inDirectMap(addr) {
		a.Region = "direct map"
		a.Phys, a.HasPhys = addr-m.direct, true
		k.describePage(a)
		return a, nil
	}
	if m.pagesErr == nil && addr >= m.vmemmap {
		if maxPFN, err := k.symbolValue("max_pfn"); err == nil && addr < m.vmemmap+maxPFN*m.pageStruct {
			a.Region = "vmemmap"
			a.PFN = (addr - m.vmemmap) / m.pageStruct
			a.Page = m.vmemmap + a.PFN*m.pageStruct
			return a, nil
		}
	}
	va, err := k.VmallocAreaOf(addr)
	if err != nil {
		a.Unread = append(a.Unread, err.Error())
	}
	if va != nil {
		a.Region, a.Vmalloc = "vmalloc", va
	} else {
		a.Region = "kernel"
	}
	if tr, err := k.VM.Translate(addr); err == nil {
		a.Phys, a.HasPhys = tr.Phys, true
		k.describePage(a)
	} else {
		a.Unread = append(a.Unread, err.Error())
	}
	return a, nil
}

// symbolValue reads the word a kernel symbol holds.
func (k *Kernel) symbolValue(name string) (uint64, error) {
	s, err := k.Symbol(name)
	if err != nil {
		return 0, err
	}
	v, err := k.ReadU64(s)
	if err != nil {
		return 0, fmt.Errorf("%s at %#x: %w", name, s, err)
	}
	return v, nil
}

// memLayout is where the direct map ends and where the struct pages
// are, read once: kmem ADDR and bt -F ask it for every address.
type memLayout struct {
	direct, vmallocBase   uint64
	hasDirect, hasVmalloc bool
	vmemmap, pageStruct   uint64
	pageSize              uint64
	compoundHead          uint64
	hasCompound           bool
	pagesErr              error // why struct pages cannot be found
}

func (k *Kernel) memLayout() *memLayout {
	k.memOnce.Do(func() {
		m := &k.mem
		m.direct, m.hasDirect = k.VM.DirectMap()
		if vb, err := k.symbolValue("vmalloc_base"); err == nil {
			m.vmallocBase, m.hasVmalloc = vb, true
		}
		m.pageSize = k.Info.PageSize
		if m.pageSize == 0 {
			m.pageSize = 4096
		}
		if n, ok := k.Info.Sizes["page"]; ok && n > 0 {
			m.pageStruct = n
		} else if n, err := k.Types.Sizeof("page"); err != nil {
			m.pagesErr = fmt.Errorf("sizeof(struct page): %w", err)
		} else if n == 0 {
			m.pagesErr = errors.New("sizeof(struct page) is 0")
		} else {
			m.pageStruct = n
		}
		if vm, err := k.symbolValue("vmemmap_base"); err != nil {
			m.pagesErr = errors.Join(m.pagesErr, err)
		} else {
			m.vmemmap = vm
		}
		if off, err := k.Types.Offset("page", "compound_head"); err == nil {
			m.compoundHead, m.hasCompound = off, true
		}
	})
	return &k.mem
}

// inDirectMap says whether addr is in the direct map (below vmalloc).
func (m *memLayout) inDirectMap(addr uint64) bool {
	return m.hasDirect && addr >= m.direct && (!m.hasVmalloc || addr < m.vmallocBase)
}

// headPage is the struct page heading page's compound page (page itself
// when it heads one or is alone).
func (k *Kernel) headPage(page uint64) uint64 {
	m := k.memLayout()
	if m.hasCompound {
		if v, err := k.ReadU64(page + m.compoundHead); err == nil && v&1 != 0 {
			return v - 1
		}
	}
	return page
}

// slabOfPage finds the slab a struct page belongs to: its head page is
// a slab iff its slab_cache is one of the caches on slab_caches, which
// needs no page flag whose encoding changed across versions. nil cache:
// not a slab page (err says if that could not be told).
func (k *Kernel) slabOfPage(page uint64) (head uint64, cache *SlabCache, err error) {
	l := k.slub()
	if l.err != nil {
		return 0, nil, l.err
	}
	head = k.headPage(page)
	c, err := k.ReadU64(head + l.slabCache)
	if err != nil {
		return head, nil, fmt.Errorf("struct %s at %#x: %w", l.slab, head, err)
	}
	ix, err := k.slabCacheIndex()
	return head, ix[c], err
}

// stackSize is THREAD_SIZE: the size of init_stack's symbol, else 16 KiB
// (x86_64's since 3.15).
func (k *Kernel) stackSize() uint64 {
	if k.Vmlinux != nil {
		if _, size, err := k.Vmlinux.Symbol("init_stack"); err == nil && size >= 4096 && size <= 1<<20 {
			return size
		}
	}
	return 16 << 10
}

// describePage finds the struct page of a.Phys (through vmemmap_base),
// its flags and, if the page belongs to a slab, the object.
func (k *Kernel) describePage(a *AddrInfo) {
	m := k.memLayout()
	if m.pagesErr != nil {
		a.Unread = append(a.Unread, "struct page: "+m.pagesErr.Error())
		return
	}
	a.PFN = a.Phys / m.pageSize
	a.Page = m.vmemmap + a.PFN*m.pageStruct
	flagsOff, err := k.Types.Offset("page", "flags")
	if err == nil {
		a.PageFlags, err = k.ReadU64(a.Page + flagsOff)
	}
	if err != nil {
		a.Unread = append(a.Unread, fmt.Sprintf("struct page at %#x: %v", a.Page, err))
		return
	}
	a.FlagNames = k.pageFlagNames(a.PageFlags)
	obj, err := k.slabObjectAt(a.Addr, a.Page)
	if err != nil {
		a.Unread = append(a.Unread, err.Error())
	}
	a.Slab = obj
}

// pageFlagNames names the set bits of page->flags below __NR_PAGEFLAGS
// (the rest hold the section, node and zone) from enum pageflags.
func (k *Kernel) pageFlagNames(flags uint64) []string {
	e, err := k.Types.Enum("pageflags")
	if err != nil {
		return nil
	}
	limit, ok := e["__NR_PAGEFLAGS"]
	if !ok || limit <= 0 || limit > 64 {
		return nil
	}
	byBit := map[int64]string{}
	for name, v := range e {
		if v < 0 || v >= limit || !strings.HasPrefix(name, "PG_") {
			continue
		}
		// Aliases share a bit (PG_swapbacked/PG_fscache...): keep one,
		// the first by name, for a stable output.
		n := strings.ToLower(strings.TrimPrefix(name, "PG_"))
		if old, dup := byBit[v]; !dup || n < old {
			byBit[v] = n
		}
	}
	var names []string
	for bit := int64(0); bit < limit; bit++ {
		if flags&(1<<bit) != 0 && byBit[bit] != "" {
			names = append(names, byBit[bit])
		}
	}
	return names
}

// slabObjectAt finds the slab object holding addr, whose page is page.
func (k *Kernel) slabObjectAt(addr, page uint64) (*SlabObject, error) {
	head, known, err := k.slabOfPage(page)
	if known == nil {
		return nil, err // not a slab page (or it could not be told)
	}
	l := k.slub()
	cache := new(SlabCache)
	*cache = *known
	if err := k.countSlabCache(l, cache); err != nil {
		return nil, err
	}
	m := k.memLayout()
	memory := m.direct + (head-m.vmemmap)/m.pageStruct*m.pageSize
	o := &SlabObject{Cache: *cache, Slab: head, Memory: memory}
	pad := uint64(0)
	if off, err := k.Types.Offset("kmem_cache", "red_left_pad"); err == nil {
		if v, err := k.readU32(cache.Addr + off); err == nil && uint64(v) < cache.Size {
			pad = uint64(v)
		}
	}
	objects, err := k.readBits(head, l.objects)
	if err != nil {
		return nil, fmt.Errorf("struct %s at %#x: %w", l.slab, head, err)
	}
	idx := (addr - memory) / cache.Size
	if idx >= objects {
		return nil, fmt.Errorf("%#x is in slab %#x of %s past its %d objects", addr, head, cache.Name, objects)
	}
	o.Object = memory + idx*cache.Size + pad
	if addr < o.Object {
		o.Object = memory + idx*cache.Size // in the left red zone
	}
	o.Offset = addr - o.Object
	// Free: on the slab's own freelist, or on the lockless freelist of
	// a CPU whose active slab it is.
	free := map[uint64]bool{}
	visit := func(p uint64) { free[p] = true }
	var why []string
	if fl, err := k.ReadU64(head + l.slabFreelist); err != nil {
		why = append(why, err.Error())
	} else if err := k.visitFreelist(cache, fl, visit); err != nil {
		why = append(why, err.Error())
	}
	for cpu := range k.CPUs {
		pcpu, err := k.perCPUOffset(cpu)
		if err != nil {
			continue
		}
		cc := cache.cpuSlab + pcpu
		if sl, err := k.ReadU64(cc + l.cpuSlabPtr); err != nil || sl != head {
			continue
		}
		if fl, err := k.ReadU64(cc + l.cpuFreelist); err != nil {
			why = append(why, err.Error())
		} else if err := k.visitFreelist(cache, fl, visit); err != nil {
			why = append(why, err.Error())
		}
	}
	o.Allocated = !free[memory+idx*cache.Size+pad] && !free[memory+idx*cache.Size]
	o.Objects, o.Free = objects, min(uint64(len(free)), objects)
	if len(why) > 0 {
		o.FreeUnknown = strings.Join(why, "; ")
	}
	return o, nil
}

// VmallocAreaOf finds the busy vmap area holding addr: vmap_area_list
// (before 6.9) or each vmap_nodes[i].busy list (6.9+), whichever the
// kernel has.
func (k *Kernel) VmallocAreaOf(addr uint64) (*VmallocArea, error) {
	areas, err := k.VmallocAreas()
	i := sort.Search(len(areas), func(i int) bool { return areas[i].End > addr })
	if i < len(areas) && areas[i].Start <= addr {
		return &areas[i], nil
	}
	return nil, err
}

// VmallocAreas lists the busy vmap areas, sorted by start.
func (k *Kernel) VmallocAreas() ([]VmallocArea, error) {
	b := k.Types
	listOff, err1 := b.Offset("vmap_area", "list")
	startOff, err2 := b.Offset("vmap_area", "va_start")
	endOff, err3 := b.Offset("vmap_area", "va_end")
	vmOff, err4 := b.Offset("vmap_area", "vm")
	callerOff, err5 := b.Offset("vm_struct", "caller")
	pagesOff, err6 := b.Offset("vm_struct", "nr_pages")
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return nil, fmt.Errorf("vmalloc areas: %w", err)
	}
	var heads []uint64
	if h, err := k.Symbol("vmap_area_list"); err == nil {
		heads = append(heads, h)
	} else {
		nodes, err1 := k.symbolValue("vmap_nodes")
		nrSym, err2 := k.Symbol("nr_vmap_nodes")
		busyOff, err3 := b.Offset("vmap_node", "busy.head")
		size, err4 := b.Sizeof("vmap_node")
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return nil, fmt.Errorf("vmalloc areas: neither vmap_area_list nor vmap_nodes: %w", err)
		}
		n, err := k.readU32(nrSym)
		if err != nil {
			return nil, fmt.Errorf("nr_vmap_nodes at %#x: %w", nrSym, err)
		}
		if n == 0 || n > maxSlabNodes {
			return nil, fmt.Errorf("nr_vmap_nodes at %#x is %d, want 1 to %d", nrSym, n, maxSlabNodes)
		}
		for i := uint64(0); i < uint64(n); i++ {
			heads = append(heads, nodes+i*size+busyOff)
		}
	}
	var out []VmallocArea
	for _, head := range heads {
		seen := map[uint64]bool{head: true}
		for p := head; ; {
			next, err := k.ReadU64(p)
			if err != nil {
				return out, fmt.Errorf("vmap area list at %#x: %w", p, err)
			}
			if next == head {
				break
			}
			if seen[next] || len(out) >= maxVmapAreas {
				return out, fmt.Errorf("vmap area list: cycle or over %d areas at %#x", maxVmapAreas, next)
			}
			seen[next] = true
			va := next - listOff
			v := VmallocArea{Area: va}
			var errs []error
			read := func(off uint64) uint64 {
				x, err := k.ReadU64(va + off)
				errs = append(errs, err)
				return x
			}
			v.Start, v.End, v.VM = read(startOff), read(endOff), read(vmOff)
			if err := errors.Join(errs...); err != nil {
				return out, fmt.Errorf("vmap_area at %#x: %w", va, err)
			}
			if v.VM != 0 {
				if c, err := k.ReadU64(v.VM + callerOff); err == nil {
					v.Caller = k.SymbolName(c)
				}
				if n, err := k.ReadU64(v.VM + pagesOff); err == nil {
					v.Pages = n
				}
			}
			out = append(out, v)
			p = next
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// SlabCacheOf names the slab cache whose slab holds a direct-map
// address, for bt -F; "" when it is in none (or cannot be told).
func (k *Kernel) SlabCacheOf(addr uint64) string {
	m := k.memLayout()
	if !m.inDirectMap(addr) || m.pagesErr != nil {
		return ""
	}
	_, c, _ := k.slabOfPage(m.vmemmap + (addr-m.direct)/m.pageSize*m.pageStruct)
	if c == nil {
		return ""
	}
	return c.Name
}
