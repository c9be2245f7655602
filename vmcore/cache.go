package vmcore

import "sync"

// DefaultCachePages is how many decompressed pages a Dump keeps (64 MiB of
// 4 KiB pages): enough for the page tables, stacks and structures a
// debugging session touches over and over.
const DefaultCachePages = 16384

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

func newPageCache(capacity, pageSize int) *pageCache {
	if capacity < 1 {
		capacity = 1
	}
	c := &pageCache{capacity: capacity, pageSize: pageSize, m: make(map[uint64]*cacheEntry, capacity)}
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
