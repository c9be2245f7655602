package triage

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
)

// SlabEntry is one cache in `kmem -s`.
type SlabEntry struct {
	kernel.SlabCache
	Cache string `json:"cache"` // the kmem_cache's address, hex
}

// SlabList is `kmem -s`.
type SlabList struct {
	Caches []SlabEntry `json:"caches"`
	// Error says where the walk of the cache list stopped early.
	Error string `json:"error,omitempty"`
}

// KmemSlabs reads every SLUB cache; with names, only those.
func (t *Triage) KmemSlabs(names []string) (*SlabList, error) {
	cs, err := t.K.SlabCaches()
	if err != nil && len(cs) == 0 {
		return nil, err
	}
	l := &SlabList{}
	if err != nil {
		l.Error = err.Error()
	}
	for _, c := range cs {
		if len(names) > 0 && !slices.Contains(names, c.Name) {
			continue
		}
		l.Caches = append(l.Caches, SlabEntry{SlabCache: c, Cache: fmt.Sprintf("%x", c.Addr)})
	}
	if len(names) > 0 && len(l.Caches) == 0 {
		return nil, fmt.Errorf("kmem -s: no slab cache named %v", names)
	}
	return l, nil
}

// text prints the caches as crash's kmem -s does; the object size is the
// caller's (object_size), the slab size in crash's short units.
func (l *SlabList) text(w io.Writer) error {
	fmt.Fprintf(w, "%-16s %8s %10s %9s %6s %6s  %s\n", "CACHE", "OBJSIZE", "ALLOCATED", "TOTAL", "SLABS", "SSIZE", "NAME")
	for _, c := range l.Caches {
		fmt.Fprintf(w, "%-16s %8d %10d %9d %6d %6s  %s\n", c.Cache, c.ObjectSize, c.Allocated, c.Total, c.Slabs, shortSize(c.SlabSize), c.Name)
	}
	for _, c := range l.Caches {
		if c.Unread != "" {
			fmt.Fprintf(w, "%s: allocated is an upper bound: %s\n", c.Name, c.Unread)
		}
	}
	if l.Error != "" {
		fmt.Fprintf(w, "kmem -s: the cache list stops early: %s\n", l.Error)
	}
	return nil
}

// shortSize writes a power-of-two size as crash does: 4k, 8k, 2m.
func shortSize(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dm", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dk", n>>10)
	}
	return fmt.Sprint(n)
}

// KmemAddrResult is `kmem ADDR`.
type KmemAddrResult struct {
	Address string `json:"address"`
	*kernel.AddrInfo
	Physical string `json:"physical,omitempty"`
	Page     string `json:"page,omitempty"`
	Flags    string `json:"flags,omitempty"`
	// Slab, when the address is in a slab object.
	SlabInfo *KmemSlabObject `json:"slab_object,omitempty"`
	Vmalloc  *KmemVmalloc    `json:"vmalloc_area,omitempty"`
	Stack    *KmemStack      `json:"task_stack,omitempty"`
}

// KmemSlabObject is the slab object part of kmem ADDR.
type KmemSlabObject struct {
	row       SlabEntry
	Cache     string `json:"cache"`
	Name      string `json:"name"`
	ObjSize   uint64 `json:"object_size"`
	Slab      string `json:"slab"`
	Memory    string `json:"memory"`
	Object    string `json:"object"`
	Offset    uint64 `json:"offset"`
	Allocated bool   `json:"allocated"`
	Objects   uint64 `json:"slab_objects"`
	Free      uint64 `json:"slab_free"`
	Unsure    string `json:"free_unknown,omitempty"`
}

// KmemVmalloc is the vmalloc area part of kmem ADDR.
type KmemVmalloc struct {
	Area   string `json:"vmap_area"`
	VM     string `json:"vm_struct,omitempty"`
	Start  string `json:"start"`
	End    string `json:"end"`
	Size   uint64 `json:"size"`
	Pages  uint64 `json:"pages,omitempty"`
	Caller string `json:"caller,omitempty"`
}

// KmemStack names the task whose kernel stack holds the address.
type KmemStack struct {
	PID  int32  `json:"pid"`
	Task string `json:"task"`
	Comm string `json:"command"`
}

// KmemAddr says where an address lies: its region, page, slab object or
// vmalloc area, as crash's kmem ADDR.
func (t *Triage) KmemAddr(s string) (*KmemAddrResult, error) {
	addr, err := t.parseAddr(s)
	if err != nil {
		return nil, err
	}
	a, err := t.K.Locate(addr)
	if err != nil {
		return nil, err
	}
	r := &KmemAddrResult{Address: fmt.Sprintf("%x", addr), AddrInfo: a}
	if a.HasPhys {
		r.Physical = fmt.Sprintf("%x", a.Phys)
	}
	if a.Page != 0 {
		r.Page = fmt.Sprintf("%x", a.Page)
		r.Flags = fmt.Sprintf("%x", a.PageFlags)
	}
	if o := a.Slab; o != nil {
		r.SlabInfo = &KmemSlabObject{row: SlabEntry{o.Cache, fmt.Sprintf("%x", o.Cache.Addr)}, Objects: o.Objects, Free: o.Free, Cache: fmt.Sprintf("%x", o.Cache.Addr), Name: o.Cache.Name, ObjSize: o.Cache.ObjectSize,
			Slab: fmt.Sprintf("%x", o.Slab), Memory: fmt.Sprintf("%x", o.Memory), Object: fmt.Sprintf("%x", o.Object),
			Offset: o.Offset, Allocated: o.Allocated, Unsure: o.FreeUnknown}
	}
	if v := a.Vmalloc; v != nil {
		r.Vmalloc = &KmemVmalloc{Area: fmt.Sprintf("%x", v.Area), Start: fmt.Sprintf("%x", v.Start), End: fmt.Sprintf("%x", v.End),
			Size: v.End - v.Start, Pages: v.Pages, Caller: crashSymbol(v.Caller)}
		if v.VM != 0 {
			r.Vmalloc.VM = fmt.Sprintf("%x", v.VM)
		}
	}
	if tk := a.Stack; tk != nil {
		r.Stack = &KmemStack{PID: tk.PID, Task: fmt.Sprintf("%x", tk.Addr), Comm: tk.Comm}
	}
	return r, nil
}

// text prints the findings, the most specific first.
func (r *KmemAddrResult) text(w io.Writer) error {
	fmt.Fprintf(w, "%s: %s", r.Address, r.Region)
	if r.Module != "" {
		fmt.Fprintf(w, " %s", r.Module)
	}
	if r.Symbol != "" {
		fmt.Fprintf(w, " (%s)", crashSymbol(r.Symbol))
	}
	fmt.Fprintln(w)
	if o := r.SlabInfo; o != nil {
		(&SlabList{Caches: []SlabEntry{o.row}}).text(w)
		fmt.Fprintf(w, "  %-16s  %-16s  %5s  %9s  %4s\n", "SLAB", "MEMORY", "TOTAL", "ALLOCATED", "FREE")
		fmt.Fprintf(w, "  %-16s  %-16s  %5d  %9d  %4d\n", o.Slab, o.Memory, o.Objects, o.Objects-o.Free, o.Free)
		fmt.Fprintf(w, "  FREE / [ALLOCATED]\n")
		if o.Allocated {
			fmt.Fprintf(w, "  [%s]  (offset %d)\n", o.Object, o.Offset)
		} else {
			fmt.Fprintf(w, "   %s   (offset %d)\n", o.Object, o.Offset)
		}
		if o.Unsure != "" {
			fmt.Fprintf(w, "  a freelist could not be read (%s): not seen free\n", o.Unsure)
		}
	}
	if v := r.Vmalloc; v != nil {
		fmt.Fprintf(w, "%-16s  %-16s  %-33s  %8s  %s\n", "VMAP_AREA", "VM_STRUCT", "ADDRESS RANGE", "SIZE", "CALLER")
		fmt.Fprintf(w, "%-16s  %-16s  %s - %s  %8d  %s\n", v.Area, v.VM, v.Start, v.End, v.Size, v.Caller)
	}
	if s := r.Stack; s != nil {
		fmt.Fprintf(w, "kernel stack of PID: %d  TASK: %s  COMMAND: %q\n", s.PID, s.Task, s.Comm)
	}
	if r.Page != "" {
		fmt.Fprintf(w, "%-16s  %-12s  %-16s  %s\n", "PAGE", "PHYSICAL", "FLAGS", "")
		fmt.Fprintf(w, "%-16s  %-12s  %-16s  %s\n", r.Page, r.Physical, r.Flags, strings.Join(r.FlagNames, ","))
	} else if r.Physical != "" {
		fmt.Fprintf(w, "PHYSICAL: %s\n", r.Physical)
	}
	for _, u := range r.Unread {
		fmt.Fprintf(w, "not read: %s\n", u)
	}
	return nil
}
