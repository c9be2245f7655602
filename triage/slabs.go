package triage

import (
	"fmt"
	"io"
	"slices"

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
