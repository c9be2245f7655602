package kernel

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// SLUB's packing of kmem_cache.oo (mm/slub.c): the slab's page order
// above OO_SHIFT, its object count below.
const (
	OO_SHIFT = 16
	OO_MASK  = 1<<OO_SHIFT - 1
)

// Bounds against a damaged or hostile dump.
const (
	maxSlabCaches   = 1 << 16
	maxSlabsWalked  = 1 << 22 // partial slabs of one node, or per-CPU partials
	maxObjPerSlab   = 1 << 15 // the objects bitfield is 15 bits wide
	maxSlabNodes    = 1024    // MAX_NUMNODES on x86_64
	maxCacheNameLen = 64
)

// SlabCache is one SLUB cache, counted as crash's kmem -s counts it: the
// totals from the nodes' counters, the free objects from every partial
// slab (the nodes' and the CPUs') and every CPU's active slab and
// lockless freelist.
type SlabCache struct {
	Addr       uint64 `json:"-"`
	Name       string `json:"name"`
	ObjectSize uint64 `json:"object_size"` // kmem_cache.object_size: what callers asked for
	Size       uint64 `json:"slot_size"`   // kmem_cache.size: the object with its metadata
	ObjPerSlab uint64 `json:"objects_per_slab"`
	SlabSize   uint64 `json:"slab_size"` // bytes: PAGE_SIZE << order
	Slabs      uint64 `json:"slabs"`
	Total      uint64 `json:"total"`
	Allocated  uint64 `json:"allocated"`
	// Unread says why Allocated is an upper bound (a slab or freelist
	// the dump does not hold); empty when it is exact.
	Unread string `json:"unread,omitempty"`

	freeOff uint64 // kmem_cache.offset: the free pointer in an object
	random  uint64 // kmem_cache.random (freelist hardening), 0 if none
	cpuSlab uint64 // kmem_cache.cpu_slab, a per-CPU pointer
}

// slubLayout is where SLUB keeps what kmem -s reads, from the types:
// struct slab (5.17+) or struct page before it, kmem_cache_cpu's .slab
// or .page, the partial list through slab_list or lru.
type slubLayout struct {
	err error

	slab                          string // "slab" or "page"
	cacheList, cacheName          uint64
	objectSize, size, offset, oo  uint64
	random                        uint64
	hasRandom                     bool
	cpuSlab, node                 uint64
	nodes                         uint64
	nodeSlabs, nodeTotal, nodePar uint64
	cpuFreelist, cpuSlabPtr       uint64
	cpuPartial                    uint64
	hasCPUPartial                 bool
	slabList, slabNext            uint64
	slabFreelist                  uint64
	slabCache                     uint64
	inuse, objects                bitField
	pageSize                      uint64
}

type bitField struct{ off, width uint64 }

// read extracts the bitfield from the struct at addr.
func (k *Kernel) readBits(addr uint64, f bitField) (uint64, error) {
	v, err := k.ReadU64(addr + f.off/8)
	if err != nil {
		return 0, err
	}
	return v >> (f.off % 8) & (1<<f.width - 1), nil
}

func (k *Kernel) slub() *slubLayout {
	k.slubOnce.Do(func() { k.slubL = k.loadSLUB() })
	return &k.slubL
}

func (k *Kernel) loadSLUB() (l slubLayout) {
	b := k.Types
	bf, ok := b.(symbols.BitFields)
	if !ok {
		l.err = fmt.Errorf("%s cannot say where a bitfield lies (the slabs' inuse and objects are bitfields)", symbols.TypesName(b))
		return l
	}
	if _, err := b.Offset("kmem_cache", "cpu_slab"); err != nil {
		l.err = fmt.Errorf("struct kmem_cache has no cpu_slab: not a SLUB kernel (SLAB and SLOB are not read): %w", err)
		return l
	}
	l.slab = "slab"
	if _, err := b.Offset("slab", "slab_cache"); err != nil {
		l.slab = "page"
	}
	var errs []error
	off := offsetGetter(b, &errs)
	l.cacheList = off("kmem_cache", "list")
	l.cacheName = off("kmem_cache", "name")
	l.objectSize = off("kmem_cache", "object_size")
	l.size = off("kmem_cache", "size")
	l.offset = off("kmem_cache", "offset")
	l.oo = off("kmem_cache", "oo")
	l.cpuSlab = off("kmem_cache", "cpu_slab")
	l.node = off("kmem_cache", "node")
	n, err := b.ArrayLen("kmem_cache", "node")
	errs = append(errs, err)
	l.nodes = n
	l.random, err = b.Offset("kmem_cache", "random")
	l.hasRandom = err == nil
	// nr_slabs and total_objects exist with CONFIG_SLUB_DEBUG, which
	// every distribution kernel has; without them there are no totals.
	l.nodeSlabs = off("kmem_cache_node", "nr_slabs")
	l.nodeTotal = off("kmem_cache_node", "total_objects")
	l.nodePar = off("kmem_cache_node", "partial")
	l.cpuFreelist = off("kmem_cache_cpu", "freelist")
	if v, err := b.Offset("kmem_cache_cpu", "slab"); err == nil {
		l.cpuSlabPtr = v
	} else {
		l.cpuSlabPtr = off("kmem_cache_cpu", "page")
	}
	l.cpuPartial, err = b.Offset("kmem_cache_cpu", "partial")
	l.hasCPUPartial = err == nil
	if v, err := b.Offset(l.slab, "slab_list"); err == nil {
		l.slabList = v
	} else {
		l.slabList = off(l.slab, "lru")
	}
	if l.hasCPUPartial {
		l.slabNext = off(l.slab, "next")
	}
	l.slabFreelist = off(l.slab, "freelist")
	l.slabCache = off(l.slab, "slab_cache")
	for _, f := range []struct {
		name string
		to   *bitField
	}{{"inuse", &l.inuse}, {"objects", &l.objects}} {
		o, w, err := bf.BitField(l.slab, f.name)
		if err == nil && (w == 0 || o%8+w > 64) {
			err = fmt.Errorf("struct %s.%s: %d bits at bit %d is not a readable bitfield", l.slab, f.name, w, o)
		}
		errs = append(errs, err)
		*f.to = bitField{o, w}
	}
	l.pageSize = k.memLayout().pageSize
	if err := errors.Join(errs...); err != nil {
		l.err = fmt.Errorf("SLUB layout: %w", err)
	}
	// kmem_cache.node[] is allocated for nr_node_ids nodes only: past
	// them lies other memory. A kernel without NUMA has no nr_node_ids
	// and an array of one.
	if a, err := k.Symbol("nr_node_ids"); err == nil {
		if n, err := k.readU32(a); err != nil {
			l.err = errors.Join(l.err, fmt.Errorf("nr_node_ids: %w", err))
		} else if uint64(n) < l.nodes {
			l.nodes = uint64(n)
		}
	}
	if l.nodes == 0 || l.nodes > maxSlabNodes {
		l.err = errors.Join(l.err, fmt.Errorf("kmem_cache.node has %d entries", l.nodes))
	}
	return l
}

// SlabCaches reads every cache on the slab_caches list, in list order.
func (k *Kernel) SlabCaches() ([]SlabCache, error) {
	return k.slabCaches(true)
}

// slabCacheIndex is every cache by its address, uncounted, read once:
// what tells a slab page from another (its slab_cache is one of them).
func (k *Kernel) slabCacheIndex() (map[uint64]*SlabCache, error) {
	k.slabIxOnce.Do(func() {
		cs, err := k.slabCaches(false)
		if len(cs) == 0 && err != nil {
			k.slabIxErr = err
			return
		}
		k.slabIx = make(map[uint64]*SlabCache, len(cs))
		for i := range cs {
			k.slabIx[cs[i].Addr] = &cs[i]
		}
	})
	return k.slabIx, k.slabIxErr
}

func (k *Kernel) slabCaches(count bool) ([]SlabCache, error) {
	l := k.slub()
	if l.err != nil {
		return nil, l.err
	}
	head, err := k.Symbol("slab_caches")
	if err != nil {
		return nil, err
	}
	var out []SlabCache
	seen := map[uint64]bool{head: true}
	for p := head; ; {
		next, err := k.ReadU64(p)
		if err != nil {
			return out, fmt.Errorf("slab_caches list at %#x: %w", p, err)
		}
		if next == head {
			return out, nil
		}
		if seen[next] || len(out) >= maxSlabCaches {
			return out, fmt.Errorf("slab_caches list: cycle or more than %d caches at %#x", maxSlabCaches, next)
		}
		seen[next] = true
		c, err := k.slabCacheHeader(l, next-l.cacheList)
		if err == nil && count {
			err = k.countSlabCache(l, &c)
		}
		if err != nil {
			return out, err
		}
		out = append(out, c)
		p = next
	}
}

// slabCacheHeader reads what a kmem_cache says of itself, counting
// nothing.
func (k *Kernel) slabCacheHeader(l *slubLayout, s uint64) (SlabCache, error) {
	c := SlabCache{Addr: s}
	var errs []error
	u32 := func(off uint64) uint64 {
		v, err := k.readU32(s + off)
		errs = append(errs, err)
		return uint64(v)
	}
	c.ObjectSize, c.Size, c.freeOff = u32(l.objectSize), u32(l.size), u32(l.offset)
	oo := u32(l.oo)
	cpuSlab, err := k.ReadU64(s + l.cpuSlab)
	errs = append(errs, err)
	c.cpuSlab = cpuSlab
	if l.hasRandom {
		c.random, err = k.ReadU64(s + l.random)
		errs = append(errs, err)
	}
	if np, err := k.ReadU64(s + l.cacheName); err == nil {
		c.Name, _ = k.readCString(np, maxCacheNameLen)
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("kmem_cache %s at %#x: %w", c.Name, s, err)
	}
	order := oo >> OO_SHIFT
	c.ObjPerSlab = oo & OO_MASK
	if order > 20 || c.Size == 0 {
		return c, fmt.Errorf("kmem_cache %s at %#x: order %d, size %d", c.Name, s, order, c.Size)
	}
	c.SlabSize = l.pageSize << order
	return c, nil
}

// countSlabCache fills in the cache's slabs, total and allocated objects.
func (k *Kernel) countSlabCache(l *slubLayout, c *SlabCache) error {
	s, cpuSlab := c.Addr, c.cpuSlab
	var free uint64
	var unread []string
	note := func(format string, args ...any) {
		if len(unread) < 4 {
			unread = append(unread, fmt.Sprintf(format, args...))
		}
	}
	for i := uint64(0); i < l.nodes; i++ {
		n, err := k.ReadU64(s + l.node + 8*i)
		if err != nil {
			return fmt.Errorf("kmem_cache %s node[%d] at %#x: %w", c.Name, i, s+l.node+8*i, err)
		}
		if n == 0 {
			continue
		}
		slabs, err1 := k.ReadU64(n + l.nodeSlabs)
		total, err2 := k.ReadU64(n + l.nodeTotal)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("kmem_cache %s node %d at %#x: %w", c.Name, i, n, err)
		}
		c.Slabs += slabs
		c.Total += total
		// The node's partial slabs.
		head := n + l.nodePar
		walked := 0
		for p := head; ; walked++ {
			next, err := k.ReadU64(p)
			if err != nil {
				note("partial list at %#x: %v", p, err)
				break
			}
			if next == head {
				break
			}
			if walked >= maxSlabsWalked {
				note("partial list of node %d: more than %d slabs", i, maxSlabsWalked)
				break
			}
			f, err := k.slabFree(l, next-l.slabList)
			if err != nil {
				note("%v", err)
				break
			}
			free += f
			p = next
		}
	}
	for cpu := range k.CPUs {
		pcpu, err := k.perCPUOffset(cpu)
		if err != nil {
			note("__per_cpu_offset[%d]: %v", cpu, err)
			continue
		}
		cc := cpuSlab + pcpu
		if l.hasCPUPartial {
			p, err := k.ReadU64(cc + l.cpuPartial)
			for n := 0; err == nil && p != 0; n++ {
				if n >= maxSlabsWalked {
					note("CPU %d partial slabs: more than %d", cpu, maxSlabsWalked)
					break
				}
				var f uint64
				if f, err = k.slabFree(l, p); err == nil {
					free += f
					p, err = k.ReadU64(p + l.slabNext)
				}
			}
			if err != nil {
				note("CPU %d partial slabs: %v", cpu, err)
			}
		}
		sl, err := k.ReadU64(cc + l.cpuSlabPtr)
		if err != nil {
			note("CPU %d kmem_cache_cpu at %#x: %v", cpu, cc, err)
			continue
		}
		if sl == 0 {
			continue
		}
		// The active slab: objects freed by other CPUs left inuse, the
		// rest wait on the CPU's lockless freelist.
		f, err := k.slabFree(l, sl)
		if err != nil {
			note("CPU %d slab: %v", cpu, err)
			continue
		}
		free += f
		fl, err := k.ReadU64(cc + l.cpuFreelist)
		if err == nil {
			var n uint64
			n, err = k.countFreelist(c, fl)
			free += n
		}
		if err != nil {
			note("CPU %d freelist: %v", cpu, err)
		}
	}
	if free > c.Total {
		note("%d free objects counted, more than the %d in all", free, c.Total)
		free = c.Total
	}
	c.Allocated = c.Total - free
	if len(unread) > 0 {
		c.Unread = strings.Join(unread, "; ")
	}
	return nil
}

// slabFree is a slab's free object count: objects - inuse.
func (k *Kernel) slabFree(l *slubLayout, slab uint64) (uint64, error) {
	objects, err1 := k.readBits(slab, l.objects)
	inuse, err2 := k.readBits(slab, l.inuse)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("struct %s at %#x: %w", l.slab, slab, err)
	}
	if inuse > objects {
		return 0, fmt.Errorf("struct %s at %#x: %d objects in use of %d", l.slab, slab, inuse, objects)
	}
	return objects - inuse, nil
}

// countFreelist counts the objects on a freelist.
func (k *Kernel) countFreelist(c *SlabCache, head uint64) (uint64, error) {
	objs, err := k.freelist(c, head)
	return uint64(len(objs)), err
}

// visitFreelist calls visit for each object on a freelist.
func (k *Kernel) visitFreelist(c *SlabCache, head uint64, visit func(uint64)) error {
	objs, err := k.freelist(c, head)
	for _, o := range objs {
		visit(o)
	}
	return err
}

// freelist follows a freelist from its first object. A hardened kernel
// (kmem_cache.random) stores each next pointer xor'ed with the random
// and with the address it is stored at, byte-swapped since 5.7: both are
// tried, and the one whose every pointer lands on an object of the same
// slab is taken, so no kernel version is assumed.
func (k *Kernel) freelist(c *SlabCache, head uint64) ([]uint64, error) {
	if head == 0 {
		return nil, nil
	}
	decoders := []func(v, at uint64) uint64{func(v, _ uint64) uint64 { return v }}
	if c.random != 0 {
		decoders = []func(v, at uint64) uint64{
			func(v, at uint64) uint64 { return v ^ c.random ^ bits.ReverseBytes64(at) },
			func(v, at uint64) uint64 { return v ^ c.random ^ at },
		}
	}
	limit := c.ObjPerSlab
	if limit == 0 || limit > maxObjPerSlab {
		limit = maxObjPerSlab
	}
	var lastErr error
	for _, decode := range decoders {
		objs, err := k.walkFreelist(c, head, limit, decode)
		if err == nil {
			return objs, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func (k *Kernel) walkFreelist(c *SlabCache, head, limit uint64, decode func(v, at uint64) uint64) ([]uint64, error) {
	onSlab := func(p uint64) bool {
		d := int64(p - head)
		return d > -int64(c.SlabSize) && d < int64(c.SlabSize) && d%int64(c.Size) == 0
	}
	seen := map[uint64]bool{}
	var objs []uint64
	for p := head; p != 0; {
		if uint64(len(objs)) >= limit || seen[p] || !onSlab(p) {
			return nil, fmt.Errorf("freelist of %s from %#x: %#x is not a free object of the slab", c.Name, head, p)
		}
		seen[p] = true
		objs = append(objs, p)
		v, err := k.ReadU64(p + c.freeOff)
		if err != nil {
			return nil, fmt.Errorf("freelist of %s: %w", c.Name, err)
		}
		p = decode(v, p+c.freeOff)
	}
	return objs, nil
}
