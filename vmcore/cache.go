package vmcore

import "sync"

// DefaultCacheBytes bounds the decompressed pages a Dump keeps: enough for
// the page tables, stacks and structures a debugging session touches over
// and over. The bound is in bytes, not pages, so a dump with large pages
// cannot make it grow.
const DefaultCacheBytes = 64 << 20

// DefaultCachePages is how many 4 KiB pages DefaultCacheBytes holds.
const DefaultCachePages = DefaultCacheBytes / 4096

// pageCache is an LRU of decompressed pages keyed by pfn. Entries are
// copied out under the lock so eviction can recycle buffers safely.
type pageCache struct {
	mu       sync.Mutex
	capacity int
	pageSize int
	m        map[uint64]*cacheEntry
	head     cacheEntry // sentinel: head.next is most recent
	hits     uint64
	misses   uint64
}

type cacheEntry struct {
	pfn        uint64
	data       []byte
	prev, next *cacheEntry
}

// newPageCache makes a cache of at most maxBytes of pages (at least one).
func newPageCache(maxBytes, pageSize int) *pageCache {
	capacity := max(maxBytes/max(pageSize, 1), 1)
	c := &pageCache{capacity: capacity, pageSize: pageSize, m: make(map[uint64]*cacheEntry)}
	c.head.next, c.head.prev = &c.head, &c.head
	return c
}

func (c *pageCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *pageCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

// copyOut copies page pfn's bytes from offset off into dst if cached.
func (c *pageCache) copyOut(pfn uint64, off int, dst []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[pfn]
	if e == nil {
		c.misses++
		return false
	}
	c.hits++
	if c.head.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	copy(dst, e.data[off:])
	return true
}

// put stores a copy of page.
func (c *pageCache) put(pfn uint64, page []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[pfn]; e != nil {
		copy(e.data, page)
		return
	}
	var e *cacheEntry
	if len(c.m) >= c.capacity {
		e = c.head.prev
		c.unlink(e)
		delete(c.m, e.pfn)
	} else {
		e = &cacheEntry{data: make([]byte, c.pageSize)}
	}
	e.pfn = pfn
	copy(e.data, page)
	c.m[pfn] = e
	c.pushFront(e)
}

func (c *pageCache) stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}
