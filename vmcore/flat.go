package vmcore

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"io"
	"slices"
	"sort"
)

// makedumpfile's flattened format (makedumpfile.h): a 4096-byte header
// starting with the signature, then records {int64 offset, int64 size,
// data} in big-endian, each placing its data at offset of the file the
// stream stands for; offset -1 ends the stream.
const (
	MAKEDUMPFILE_SIGNATURE = "makedumpfile"
	TYPE_FLAT_HEADER       = 1
	VERSION_FLAT_HEADER    = 1
	MAX_SIZE_MDF_HEADER    = 4096
	END_FLAG_FLAT_HEADER   = -1
	flatRecordHeaderSize   = 16

	// maxFlatRecords bounds the index; makedumpfile writes one record per
	// buffer flush, so even terabyte dumps stay far below this.
	maxFlatRecords = 1 << 26
)

func isFlattened(head []byte) bool {
	return len(head) >= 16 && bytes.Equal(head[:16], append([]byte(MAKEDUMPFILE_SIGNATURE), 0, 0, 0, 0))
}

// flatExtent places file bytes [fileOff, fileOff+size) at off of the
// rearranged view.
type flatExtent struct {
	off, size, fileOff int64
}

// flatSource reads a flattened stream in place as the file it stands for.
// Bytes no record wrote read as zeros, as they would after makedumpfile -R.
type flatSource struct {
	src       source
	extents   []flatExtent // sorted by off, non-overlapping
	size      int64        // of the file the stream stands for: the end of its last record
	held      int64        // bytes records really carry (at most the stream's size)
	truncated bool         // the stream ended without its end record
}

func openFlattened(src source) (*flatSource, error) {
	name := src.Name()
	var h [32]byte
	if err := readFull(src, h[:], 0); err != nil {
		return nil, formatErr(name, 0, "flattened header: %v", err)
	}
	be := binary.BigEndian
	if t := int64(be.Uint64(h[16:])); t != TYPE_FLAT_HEADER {
		return nil, formatErr(name, 16, "flattened header type %d, want %d", t, TYPE_FLAT_HEADER)
	}
	if v := int64(be.Uint64(h[24:])); v != VERSION_FLAT_HEADER {
		return nil, formatErr(name, 24, "flattened header version %d, want %d", v, VERSION_FLAT_HEADER)
	}
	f := &flatSource{src: src}
	fileSize := src.Size()
	pos := int64(MAX_SIZE_MDF_HEADER)
	var rh [flatRecordHeaderSize]byte
	ordered := true
	for {
		if pos+flatRecordHeaderSize > fileSize {
			// Cut short (a full disk, an interrupted transfer): serve what
			// arrived.
			f.truncated = true
			break
		}
		if err := readFull(src, rh[:], pos); err != nil {
			return nil, formatErr(name, pos, "flattened record header: %v", err)
		}
		off := int64(be.Uint64(rh[0:]))
		size := int64(be.Uint64(rh[8:]))
		if off == END_FLAG_FLAT_HEADER {
			break
		}
		if off < 0 || size < 0 || off > 1<<62 || size > 1<<40 {
			return nil, formatErr(name, pos, "flattened record with offset %d and size %d", off, size)
		}
		data := pos + flatRecordHeaderSize
		if size > fileSize-data {
			f.truncated = true
			size = fileSize - data
		}
		if len(f.extents) >= maxFlatRecords {
			return nil, formatErr(name, pos, "more than %d flattened records", maxFlatRecords)
		}
		if size > 0 {
			if n := len(f.extents); n > 0 && off < f.extents[n-1].off+f.extents[n-1].size {
				ordered = false
			}
			f.extents = append(f.extents, flatExtent{off: off, size: size, fileOff: data})
		}
		pos = data + size
		if f.truncated {
			break
		}
	}
	if !ordered {
		f.extents = resolveOverlaps(f.extents)
	}
	for _, e := range f.extents {
		if end := e.off + e.size; end > f.size {
			f.size = end
		}
		f.held += e.size
	}
	return f, nil
}

// resolveOverlaps turns records in stream order into sorted,
// non-overlapping extents where a later record wins (makedumpfile
// rewrites its headers at the end of a dump). It sweeps the record
// boundaries in order with a heap of the records covering the current
// point, newest on top: O(n log n) however the records overlap.
func resolveOverlaps(recs []flatExtent) []flatExtent {
	order := make([]int, len(recs)) // record indexes by start
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return recs[order[a]].off < recs[order[b]].off })
	bounds := make([]int64, 0, 2*len(recs))
	for _, r := range recs {
		bounds = append(bounds, r.off, r.off+r.size)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	var out []flatExtent
	h := &newestHeap{recs: recs}
	next := 0
	for bi := 0; bi+1 < len(bounds); bi++ {
		lo, hi := bounds[bi], bounds[bi+1]
		for next < len(order) && recs[order[next]].off <= lo {
			heap.Push(h, order[next])
			next++
		}
		for h.Len() > 0 && recs[h.idx[0]].off+recs[h.idx[0]].size <= lo {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			continue // a hole
		}
		r := recs[h.idx[0]]
		e := flatExtent{off: lo, size: hi - lo, fileOff: r.fileOff + (lo - r.off)}
		if n := len(out); n > 0 && out[n-1].off+out[n-1].size == e.off && out[n-1].fileOff+out[n-1].size == e.fileOff {
			out[n-1].size += e.size
			continue
		}
		out = append(out, e)
	}
	return out
}

// newestHeap orders record indexes so the latest record (the highest
// index, which wins) is on top.
type newestHeap struct {
	recs []flatExtent
	idx  []int
}

func (h *newestHeap) Len() int           { return len(h.idx) }
func (h *newestHeap) Less(i, j int) bool { return h.idx[i] > h.idx[j] }
func (h *newestHeap) Swap(i, j int)      { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *newestHeap) Push(x any)         { h.idx = append(h.idx, x.(int)) }
func (h *newestHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}

func (f *flatSource) Name() string  { return f.src.Name() }
func (f *flatSource) Size() int64   { return f.size }
func (f *flatSource) stored() int64 { return f.held }

func (f *flatSource) find(off int64) int {
	return sort.Search(len(f.extents), func(i int) bool { return f.extents[i].off+f.extents[i].size > off })
}

func (f *flatSource) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= f.size {
		return 0, io.EOF
	}
	n := 0
	i := f.find(off)
	for n < len(p) && off < f.size {
		if i >= len(f.extents) {
			break
		}
		e := f.extents[i]
		if off < e.off { // a hole nobody wrote: zeros
			gap := min(e.off-off, int64(len(p)-n))
			clear(p[n : n+int(gap)])
			n += int(gap)
			off += gap
			continue
		}
		k := min(e.off+e.size-off, int64(len(p)-n))
		if err := readFull(f.src, p[n:n+int(k)], e.fileOff+(off-e.off)); err != nil {
			return n, err
		}
		n += int(k)
		off += k
		i++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *flatSource) view(off int64, n int) ([]byte, bool) {
	i := f.find(off)
	if i >= len(f.extents) {
		return nil, false
	}
	e := f.extents[i]
	if off < e.off || off+int64(n) > e.off+e.size {
		return nil, false
	}
	return f.src.view(e.fileOff+(off-e.off), n)
}
