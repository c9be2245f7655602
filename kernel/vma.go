package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// VMA is one memory mapping of a task (struct vm_area_struct), as
// /proc/PID/maps and crash's vm show it.
type VMA struct {
	Addr  uint64 // struct vm_area_struct
	Start uint64 // vm_start
	End   uint64 // vm_end (exclusive)
	Flags uint64 // vm_flags
	PgOff uint64 // vm_pgoff, in pages
	File  uint64 // struct file, 0 for an anonymous mapping
	// Name is the mapped file's path, or what /proc/PID/maps calls an
	// anonymous mapping ([heap], [stack], [vdso], a special mapping's
	// name such as [vvar]); "" for other anonymous memory.
	Name string
	// NameErr says why a file's path could not be read.
	NameErr string
}

// The vm_flags bits /proc/PID/maps prints (include/linux/mm.h: ABI
// constants, not layouts).
const (
	VM_READ     = 0x1
	VM_WRITE    = 0x2
	VM_EXEC     = 0x4
	VM_SHARED   = 0x8
	VM_MAYSHARE = 0x80
)

// Perms is the mapping's permissions as /proc/PID/maps prints them:
// r, w, x, and s or p by VM_MAYSHARE (show_map_vma tests that bit, not
// VM_SHARED, which a read-only shared file mapping lacks).
func (v VMA) Perms() string {
	p := []byte("---p")
	if v.Flags&VM_READ != 0 {
		p[0] = 'r'
	}
	if v.Flags&VM_WRITE != 0 {
		p[1] = 'w'
	}
	if v.Flags&VM_EXEC != 0 {
		p[2] = 'x'
	}
	if v.Flags&VM_MAYSHARE != 0 {
		p[3] = 's'
	}
	return string(p)
}

// maxVMAs bounds every walk of an address space: a corrupted list or
// tree ends with an error, never a hang or an unbounded allocation
// (the kernel's own sysctl_max_map_count defaults to 65530).
const maxVMAs = 1 << 20

// The maple tree's pointer encoding (include/linux/maple_tree.h,
// include/linux/xarray.h): bits, not layouts.
const (
	MAPLE_NODE_MASK       = 255
	MAPLE_NODE_TYPE_SHIFT = 3
	MAPLE_NODE_TYPE_MASK  = 0x0F
	MAPLE_HEIGHT_MAX      = 31
	MAPLE_RESERVED_RANGE  = 4096
)

// xaIsNode says whether a maple tree's root is a node (xa_is_node:
// internal, low bits 10, and past the reserved range); else the root is
// a single entry.
func xaIsNode(e uint64) bool { return e&3 == 2 && e > MAPLE_RESERVED_RANGE }

// xaIsInternal says a slot holds one of the tree's own markers (a node,
// XA_ZERO_ENTRY, a retry entry), never a VMA.
func xaIsInternal(e uint64) bool { return e&3 == 2 }

// VMAs reads a task's memory mappings from its mm_struct, sorted by
// start. The layout is what the type information has: the maple tree
// mm_struct.mm_mt (6.1+) or the mmap/vm_next list (before). An entry
// whose vm_mm is not the task's mm is dropped; the error, if any, says
// why the walk stopped early or what was dropped, and the mappings read
// up to there are returned.
func (k *Kernel) VMAs(t *Task) ([]VMA, error) {
	if t.Unreadable != "" {
		return nil, fmt.Errorf("pid %d: task_struct unreadable: %s", t.PID, t.Unreadable)
	}
	if t.MM == 0 {
		return nil, nil // a kernel thread has no address space
	}
	l, err := k.vmaLayout()
	if err != nil {
		return nil, err
	}
	var addrs []uint64
	var walkErr error
	if l.hasMT {
		addrs, walkErr = k.mapleEntries(t.MM+l.mmMT, l)
	} else {
		addrs, walkErr = k.vmaList(t.MM, l)
	}
	mm := mmNames{}
	var errs []error
	if walkErr != nil {
		errs = append(errs, fmt.Errorf("pid %d mm %#x: %w", t.PID, t.MM, walkErr))
	}
	read := func(a uint64, what string) uint64 {
		v, err := k.ReadU64(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("pid %d mm %#x: %s: %w", t.PID, t.MM, what, err))
		}
		return v
	}
	mm.startBrk = read(t.MM+l.mmStartBrk, "start_brk")
	mm.brk = read(t.MM+l.mmBrk, "brk")
	mm.startStack = read(t.MM+l.mmStartStack, "start_stack")
	if l.hasVDSO {
		mm.vdso = read(t.MM+l.mmVDSO, "context.vdso")
	}
	mapCount, mcErr := k.readU32(t.MM + l.mmMapCount)
	var out []VMA
	foreign, unreadable := 0, 0
	for _, a := range addrs {
		v, vmm, err := k.readVMA(a, l)
		if err != nil {
			unreadable++
			if unreadable <= 3 {
				errs = append(errs, err)
			}
			continue
		}
		if vmm != t.MM {
			foreign++
			continue
		}
		k.nameVMA(&v, l, mm)
		out = append(out, v)
	}
	if unreadable > 3 {
		errs = append(errs, fmt.Errorf("%d more vm_area_structs unreadable", unreadable-3))
	}
	if foreign > 0 {
		errs = append(errs, fmt.Errorf("dropped %d vm_area_structs whose vm_mm is not mm %#x", foreign, t.MM))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	if mcErr == nil && len(errs) == 0 && int(mapCount) != len(out) {
		errs = append(errs, fmt.Errorf("pid %d: %d mappings found, mm->map_count says %d", t.PID, len(out), mapCount))
	}
	return out, errors.Join(errs...)
}

// mmNames are the mm_struct fields that name anonymous mappings.
type mmNames struct{ startBrk, brk, startStack, vdso uint64 }

// vmaLayout is where mm_struct, vm_area_struct and the maple tree keep
// what VMAs reads, from the type information.
type vmaLayout struct {
	mmStartBrk, mmBrk, mmStartStack, mmVDSO, mmMapCount uint64
	hasVDSO                                             bool
	vmStart, vmEnd, vmFlags, vmPgoff, vmFile, vmMM      uint64
	vmOps, vmPrivate                                    uint64
	specialName                                         uint64 // vm_special_mapping.name
	hasSpecial                                          bool
	specialOps                                          []uint64 // special_mapping_vmops, legacy_special_mapping_vmops

	// Before 6.1: the list.
	mmMmap, vmNext uint64
	// 6.1+: the maple tree.
	hasMT      bool
	mmMT       uint64 // mm_struct.mm_mt
	mtRoot     uint64 // maple_tree.ma_root
	nodeSize   uint64 // struct maple_node
	nodes      map[int64]mapleNodeLayout
	leafBelow  int64 // node types below maple_range_64 are leaves
	arangeType int64

	path pathLayout
}

// mapleNodeLayout is where one kind of maple node keeps its pivots,
// slots and metadata end.
type mapleNodeLayout struct {
	pivot, nPivots, slot, nSlots uint64
	metaEnd                      uint64
	hasMeta                      bool
}

// vmaLayout looks up, once per call, every offset VMAs needs; a missing
// one is an error naming it.
func (k *Kernel) vmaLayout() (*vmaLayout, error) {
	b := k.Types
	l := &vmaLayout{}
	var errs []error
	get := offsetGetter(b, &errs)
	l.mmStartBrk = get("mm_struct", "start_brk")
	l.mmBrk = get("mm_struct", "brk")
	l.mmStartStack = get("mm_struct", "start_stack")
	l.mmMapCount = get("mm_struct", "map_count")
	l.vmStart = get("vm_area_struct", "vm_start")
	l.vmEnd = get("vm_area_struct", "vm_end")
	l.vmFlags = get("vm_area_struct", "vm_flags")
	l.vmPgoff = get("vm_area_struct", "vm_pgoff")
	l.vmFile = get("vm_area_struct", "vm_file")
	l.vmMM = get("vm_area_struct", "vm_mm")
	l.vmOps = get("vm_area_struct", "vm_ops")
	l.vmPrivate = get("vm_area_struct", "vm_private_data")
	if n, err := b.Offset("mm_struct", "context.vdso"); err == nil {
		l.mmVDSO, l.hasVDSO = n, true
	}
	if n, err := b.Offset("vm_special_mapping", "name"); err == nil {
		l.specialName, l.hasSpecial = n, true
		for _, s := range []string{"special_mapping_vmops", "legacy_special_mapping_vmops"} {
			if a, err := k.Symbol(s); err == nil {
				l.specialOps = append(l.specialOps, a)
			}
		}
	}
	if mt, err := b.Offset("mm_struct", "mm_mt"); err == nil {
		l.hasMT, l.mmMT = true, mt
		if err := k.mapleLayout(l); err != nil {
			errs = append(errs, err)
		}
	} else {
		mmap, err1 := b.Offset("mm_struct", "mmap")
		next, err2 := b.Offset("vm_area_struct", "vm_next")
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, fmt.Errorf("mm_struct has neither mm_mt nor the mmap list: %w", err))
		}
		l.mmMmap, l.vmNext = mmap, next
	}
	var err error
	if l.path, err = k.pathLayout(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("memory map layout: %w", err)
	}
	return l, nil
}

// mapleLayout reads the maple tree's node layouts and enum maple_type.
func (k *Kernel) mapleLayout(l *vmaLayout) error {
	b := k.Types
	var errs []error
	var err error
	if l.mtRoot, err = b.Offset("maple_tree", "ma_root"); err != nil {
		errs = append(errs, err)
	}
	if l.nodeSize, err = b.Sizeof("maple_node"); err != nil {
		errs = append(errs, err)
	} else if l.nodeSize == 0 || l.nodeSize > 4096 {
		errs = append(errs, fmt.Errorf("struct maple_node of %d bytes", l.nodeSize))
	}
	types := map[string]int64{}
	for _, n := range []string{"maple_dense", "maple_leaf_64", "maple_range_64", "maple_arange_64"} {
		v, err := b.EnumValue(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("enum maple_type: %w", err))
		} else if v < 0 || v > MAPLE_NODE_TYPE_MASK {
			errs = append(errs, fmt.Errorf("enum maple_type: %s is %d, want 0 to %d", n, v, MAPLE_NODE_TYPE_MASK))
		}
		types[n] = v
	}
	// maple_dense nodes (no pivots) are not among l.nodes: the walk says so.
	l.leafBelow, l.arangeType = types["maple_range_64"], types["maple_arange_64"]
	l.nodes = map[int64]mapleNodeLayout{}
	for _, s := range []struct {
		member, typ string
		kinds       []string
	}{
		{"mr64", "maple_range_64", []string{"maple_leaf_64", "maple_range_64"}},
		{"ma64", "maple_arange_64", []string{"maple_arange_64"}},
	} {
		base, err1 := b.Offset("maple_node", s.member)
		piv, err2 := b.Offset(s.typ, "pivot")
		nPiv, err3 := k.arrayLen(s.typ, "pivot", 1, 64)
		slot, err4 := b.Offset(s.typ, "slot")
		nSlot, err5 := k.arrayLen(s.typ, "slot", 2, 64)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			errs = append(errs, err)
			continue
		}
		nl := mapleNodeLayout{pivot: base + piv, nPivots: nPiv, slot: base + slot, nSlots: nSlot}
		if m, err := b.Offset(s.typ, "meta.end"); err == nil {
			nl.metaEnd, nl.hasMeta = base+m, true
		}
		if nl.pivot+nPiv*8 > l.nodeSize || nl.slot+nSlot*8 > l.nodeSize || nl.metaEnd >= l.nodeSize || nPiv+1 != nSlot {
			errs = append(errs, fmt.Errorf("struct %s (%d pivots, %d slots) does not fit struct maple_node of %d bytes", s.typ, nPiv, nSlot, l.nodeSize))
			continue
		}
		for _, kind := range s.kinds {
			l.nodes[types[kind]] = nl
		}
	}
	return errors.Join(errs...)
}

// vmaList walks mm->mmap and vm_next (kernels before 6.1).
func (k *Kernel) vmaList(mm uint64, l *vmaLayout) ([]uint64, error) {
	p, err := k.ReadU64(mm + l.mmMmap)
	if err != nil {
		return nil, fmt.Errorf("mm->mmap: %w", err)
	}
	var out []uint64
	seen := map[uint64]bool{}
	for p != 0 {
		if seen[p] {
			return out, fmt.Errorf("vm_next list loops back to %#x", p)
		}
		if len(out) >= maxVMAs {
			return out, fmt.Errorf("more than %d VMAs: list not followed further", maxVMAs)
		}
		seen[p] = true
		out = append(out, p)
		if p, err = k.ReadU64(p + l.vmNext); err != nil {
			return out, fmt.Errorf("vm_area_struct %#x vm_next: %w", out[len(out)-1], err)
		}
	}
	return out, nil
}

// mapleEntries returns the entries (VMA addresses) of the maple tree at
// mt, in index order. Nodes are walked depth first with each node's
// implied range, the data end found as ma_data_end does: the metadata
// end when the last pivot is 0, else the pivot equal to the node's max.
func (k *Kernel) mapleEntries(mt uint64, l *vmaLayout) ([]uint64, error) {
	root, err := k.ReadU64(mt + l.mtRoot)
	if err != nil {
		return nil, fmt.Errorf("maple tree %#x ma_root: %w", mt, err)
	}
	if root == 0 {
		return nil, nil
	}
	if !xaIsNode(root) {
		// A single entry at index 0 lives in the root itself.
		if xaIsInternal(root) {
			return nil, fmt.Errorf("maple tree %#x: root %#x is a marker, not an entry", mt, root)
		}
		return []uint64{root}, nil
	}
	return walkMaple(root, l, k.Read)
}

// walkMaple walks the tree under the encoded root node, reading memory
// with read.
func walkMaple(root uint64, l *vmaLayout, read func(p []byte, addr uint64) error) ([]uint64, error) {
	w := mapleWalk{read: read, l: l, seen: map[uint64]bool{}}
	w.node(root, 0, ^uint64(0), 0)
	return w.out, w.err
}

// mapleWalk is the state of one maple tree walk.
type mapleWalk struct {
	read func(p []byte, addr uint64) error
	l    *vmaLayout
	seen map[uint64]bool
	out  []uint64
	err  error
}

// node visits the encoded node enode covering [min, max] at depth.
func (w *mapleWalk) node(enode, min, max uint64, depth int) {
	if w.err != nil {
		return
	}
	addr := enode &^ MAPLE_NODE_MASK
	typ := int64(enode>>MAPLE_NODE_TYPE_SHIFT) & MAPLE_NODE_TYPE_MASK
	switch {
	case depth > MAPLE_HEIGHT_MAX:
		w.err = fmt.Errorf("maple node %#x: deeper than MAPLE_HEIGHT_MAX (%d)", addr, MAPLE_HEIGHT_MAX)
		return
	case w.seen[addr]:
		w.err = fmt.Errorf("maple node %#x reached twice: the tree loops", addr)
		return
	case len(w.seen) >= maxVMAs:
		w.err = fmt.Errorf("more than %d maple nodes: tree not followed further", maxVMAs)
		return
	}
	w.seen[addr] = true
	nl, ok := w.l.nodes[typ]
	if !ok {
		w.err = fmt.Errorf("maple node %#x (entry %#x): type %d is not a range node", addr, enode, typ)
		return
	}
	buf := make([]byte, w.l.nodeSize)
	if err := w.read(buf, addr); err != nil {
		w.err = fmt.Errorf("maple node %#x: %w", addr, err)
		return
	}
	u64 := func(off uint64) uint64 { return binary.LittleEndian.Uint64(buf[off:]) }
	if parent := u64(0) &^ MAPLE_NODE_MASK; parent == addr {
		w.err = fmt.Errorf("maple node %#x is dead (its parent is itself)", addr)
		return
	}
	pivot := func(i uint64) uint64 { return u64(nl.pivot + i*8) }
	// ma_data_end: the last slot in use.
	var end uint64
	last := nl.nPivots - 1
	switch {
	case typ != w.l.arangeType && pivot(last) == max:
		end = last
	case typ != w.l.arangeType && pivot(last) != 0:
		end = nl.nPivots
	case nl.hasMeta:
		end = uint64(buf[nl.metaEnd])
	default:
		// No metadata in the type information: the last nonzero pivot.
		for end = 0; end < last && pivot(end+1) != 0; end++ {
		}
	}
	if end >= nl.nSlots {
		w.err = fmt.Errorf("maple node %#x: data end %d past its %d slots", addr, end, nl.nSlots)
		return
	}
	leaf := typ < w.l.leafBelow
	lo := min
	for i := uint64(0); i <= end; i++ {
		hi := max
		if i < nl.nPivots && i < end {
			hi = pivot(i)
		} else if i < nl.nPivots && pivot(i) != 0 && pivot(i) < max {
			hi = pivot(i)
		}
		if hi < lo || hi > max {
			w.err = fmt.Errorf("maple node %#x slot %d: pivot %#x outside [%#x, %#x]", addr, i, hi, lo, max)
			return
		}
		e := u64(nl.slot + i*8)
		switch {
		case e == 0:
		case leaf && xaIsInternal(e):
			// XA_ZERO_ENTRY and the like: no VMA.
		case leaf:
			if len(w.out) >= maxVMAs {
				w.err = fmt.Errorf("more than %d VMAs: tree not followed further", maxVMAs)
				return
			}
			w.out = append(w.out, e)
		default:
			// A child: an encoded node (mt_mk_node: address, type <<
			// MAPLE_NODE_TYPE_SHIFT, MAPLE_ENODE_NULL), which, unlike the
			// root's, need not look like xa_is_node.
			w.node(e, lo, hi, depth+1)
			if w.err != nil {
				return
			}
		}
		if hi == max {
			break
		}
		lo = hi + 1
	}
}

// readVMA reads one vm_area_struct and its vm_mm.
func (k *Kernel) readVMA(a uint64, l *vmaLayout) (VMA, uint64, error) {
	v := VMA{Addr: a}
	var first error // the fields share a page or two: one reason is enough
	read := func(off uint64) uint64 {
		x, err := k.ReadU64(a + off)
		if first == nil {
			first = err
		}
		return x
	}
	mm := read(l.vmMM)
	v.Start = read(l.vmStart)
	v.End = read(l.vmEnd)
	v.Flags = read(l.vmFlags)
	v.PgOff = read(l.vmPgoff)
	v.File = read(l.vmFile)
	if first != nil {
		return v, 0, fmt.Errorf("vm_area_struct %#x: %w", a, first)
	}
	if v.End <= v.Start {
		return v, 0, fmt.Errorf("vm_area_struct %#x: vm_end %#x not past vm_start %#x", a, v.End, v.Start)
	}
	return v, mm, nil
}

// nameVMA names a mapping as show_map_vma does: the file's path, a
// special mapping's own name, then [vdso], [heap] and [stack] by the
// mm's fields.
func (k *Kernel) nameVMA(v *VMA, l *vmaLayout, mm mmNames) {
	if v.File != 0 {
		p, err := k.filePath(v.File, &l.path)
		if err != nil {
			v.NameErr = err.Error()
		}
		v.Name = p
		return
	}
	if l.hasSpecial && len(l.specialOps) > 0 {
		if ops, err := k.ReadU64(v.Addr + l.vmOps); err == nil && ops != 0 {
			for _, s := range l.specialOps {
				if ops != s {
					continue
				}
				sm, err := k.ReadU64(v.Addr + l.vmPrivate)
				if err == nil && sm != 0 {
					if np, err := k.ReadU64(sm + l.specialName); err == nil && np != 0 {
						if name, err := k.readCString(np, 64); err == nil && name != "" {
							v.Name = name
							return
						}
					}
				}
			}
		}
	}
	switch {
	case l.hasVDSO && mm.vdso != 0 && v.Start == mm.vdso:
		v.Name = "[vdso]"
	case v.Start <= mm.brk && v.End >= mm.startBrk:
		v.Name = "[heap]"
	case v.Start <= mm.startStack && v.End >= mm.startStack:
		v.Name = "[stack]"
	}
}

// PGD is the task's mm->pgd (a kernel virtual address), which crash's
// vm prints; 0 for a kernel thread.
func (k *Kernel) PGD(t *Task) (uint64, error) {
	if t.MM == 0 {
		return 0, nil
	}
	v, err := k.ReadU64(t.MM + k.off.mmPGD)
	if err != nil {
		return 0, fmt.Errorf("pid %d mm %#x pgd: %w", t.PID, t.MM, err)
	}
	return v, nil
}
