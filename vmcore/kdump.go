package vmcore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
)

// makedumpfile's compressed kdump format (diskdump_mod.h, IMPLEMENTATION).
const (
	KDUMP_SIGNATURE    = "KDUMP   "
	DISKDUMP_SIGNATURE = "DISKDUMP"

	DISKDUMP_HEADER_BLOCKS = 1
	diskDumpHeaderSize     = 464
	kdumpSubHeaderSize     = 104
	pageDescSize           = 24

	// Bits per prefix-popcount block: 512 bytes of bitmap.
	prefixBlockBits  = 4096
	prefixBlockWords = prefixBlockBits / 64

	// block_size is the dumped machine's page size (4096 on x86_64).
	// Linux page sizes run from 4 KiB to 256 KiB; anything else is damage,
	// and would size every page buffer and cache entry.
	minBlockSize = 4 << 10
	maxBlockSize = 256 << 10

	// maxPhysAddrBits is x86_64's MAX_PHYSMEM_BITS with 5-level paging:
	// no pfn at or above 2^52/page size names memory, so a larger
	// max_mapnr is damage (and pfn*block_size could overflow).
	maxPhysAddrBits = 52
)

// DiskDumpHeader is struct disk_dump_header, block 0 of the file.
type DiskDumpHeader struct {
	Signature     string
	HeaderVersion int32
	Utsname       Utsname
	TimestampSec  int64
	TimestampUsec int64
	Status        uint32
	BlockSize     int32
	SubHdrSize    int32
	BitmapBlocks  uint32
	MaxMapnr      uint32 // 32-bit copy; MaxMapnr64 of the sub-header wins in v6
	NrCPUs        int32
}

// Utsname is the new_utsname copy in the header.
type Utsname struct {
	Sysname, Nodename, Release, Version, Machine, Domainname string
}

// KdumpSubHeader is struct kdump_sub_header, block 1. Fields exist from
// the header version noted beside them; later fields read as zero before.
type KdumpSubHeader struct {
	PhysBase         uint64
	DumpLevel        int32  // v1
	Split            int32  // v2
	StartPFN         uint64 // v2, 32-bit era
	EndPFN           uint64 // v2
	OffsetVMCOREINFO int64  // v3
	SizeVMCOREINFO   uint64 // v3
	OffsetNote       int64  // v4
	SizeNote         uint64 // v4
	OffsetEraseinfo  int64  // v5
	SizeEraseinfo    uint64 // v5
	StartPFN64       uint64 // v6
	EndPFN64         uint64 // v6
	MaxMapnr64       uint64 // v6
}

func isKdump(head []byte) bool {
	return len(head) >= 8 && (string(head[:8]) == KDUMP_SIGNATURE || string(head[:8]) == DISKDUMP_SIGNATURE)
}

// kdumpFile is one compressed kdump file (one part of a split set).
type kdumpFile struct {
	src        source
	hdr        DiskDumpHeader
	sub        KdumpSubHeader
	pageSize   int
	maxMapnr   uint64
	startPFN   uint64 // [startPFN, endPFN): pfns this file holds
	endPFN     uint64
	bitmap1    []byte // pages that exist (nil for one-bitmap files)
	bitmap2    []byte // pages dumped
	prefix     []uint64
	descOffset int64  // file offset of page_desc[0]
	descBase   uint64 // set bits of bitmap2 before startPFN
	notes      *noteSet
	vmcoreinfo []byte
	vmcoreOff  int64 // file offset of the VMCOREINFO text
	truncated  bool  // descriptors or data run past the end of the file
}

func cstring(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func openKdump(src source) (*kdumpFile, error) {
	name := src.Name()
	le := binary.LittleEndian
	var h [diskDumpHeaderSize]byte
	if err := readFull(src, h[:], 0); err != nil {
		return nil, formatErr(name, 0, "kdump header: %v", err)
	}
	k := &kdumpFile{src: src}
	d := &k.hdr
	d.Signature = string(h[:8])
	d.HeaderVersion = int32(le.Uint32(h[8:]))
	u := func(i int) string { return cstring(h[12+65*i : 12+65*(i+1)]) }
	d.Utsname = Utsname{u(0), u(1), u(2), u(3), u(4), u(5)}
	d.TimestampSec = int64(le.Uint64(h[408:]))
	d.TimestampUsec = int64(le.Uint64(h[416:]))
	d.Status = le.Uint32(h[424:])
	d.BlockSize = int32(le.Uint32(h[428:]))
	d.SubHdrSize = int32(le.Uint32(h[432:]))
	d.BitmapBlocks = le.Uint32(h[436:])
	d.MaxMapnr = le.Uint32(h[440:])
	d.NrCPUs = int32(le.Uint32(h[460:]))

	if d.HeaderVersion < 0 {
		return nil, formatErr(name, 8, "header_version %d", d.HeaderVersion)
	}
	bs := int64(d.BlockSize)
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return nil, formatErr(name, 428, "block_size %d is not a page size (a power of two from %d to %d)", d.BlockSize, minBlockSize, maxBlockSize)
	}
	if d.SubHdrSize < 0 || int64(d.SubHdrSize) > src.Size()/bs {
		return nil, formatErr(name, 432, "sub_hdr_size %d blocks does not fit in the file", d.SubHdrSize)
	}
	k.pageSize = int(bs)

	// Sub-header, when there is one, at block 1.
	if d.SubHdrSize > 0 {
		var s [kdumpSubHeaderSize]byte
		if err := readFull(src, s[:], bs); err != nil {
			return nil, formatErr(name, bs, "kdump sub-header: %v", err)
		}
		v := d.HeaderVersion
		sh := &k.sub
		sh.PhysBase = le.Uint64(s[0:])
		sh.DumpLevel = int32(le.Uint32(s[8:]))
		if v >= 2 {
			sh.Split = int32(le.Uint32(s[12:]))
			sh.StartPFN = le.Uint64(s[16:])
			sh.EndPFN = le.Uint64(s[24:])
		}
		if v >= 3 {
			sh.OffsetVMCOREINFO = int64(le.Uint64(s[32:]))
			sh.SizeVMCOREINFO = le.Uint64(s[40:])
		}
		if v >= 4 {
			sh.OffsetNote = int64(le.Uint64(s[48:]))
			sh.SizeNote = le.Uint64(s[56:])
		}
		if v >= 5 {
			sh.OffsetEraseinfo = int64(le.Uint64(s[64:]))
			sh.SizeEraseinfo = le.Uint64(s[72:])
		}
		if v >= 6 {
			sh.StartPFN64 = le.Uint64(s[80:])
			sh.EndPFN64 = le.Uint64(s[88:])
			sh.MaxMapnr64 = le.Uint64(s[96:])
		}
	}

	k.maxMapnr = uint64(d.MaxMapnr)
	maxMapnrOff := int64(440)
	if d.HeaderVersion >= 6 && k.sub.MaxMapnr64 != 0 {
		k.maxMapnr = k.sub.MaxMapnr64
		maxMapnrOff = bs + 96
	}
	if k.maxMapnr == 0 {
		return nil, formatErr(name, maxMapnrOff, "max_mapnr 0: the dump describes no memory")
	}
	if limit := uint64(1) << maxPhysAddrBits / uint64(bs); k.maxMapnr > limit {
		return nil, formatErr(name, maxMapnrOff, "max_mapnr 0x%x pages of %d bytes is beyond x86_64's %d-bit physical address space", k.maxMapnr, bs, maxPhysAddrBits)
	}

	// Bitmaps: two halves (exists, dumped) when there is room for both,
	// else the old single bitmap of dumped pages. Every product below is
	// of values bounded above (block_size <= 2^18, sub_hdr_size and
	// bitmap_blocks < 2^32, max_mapnr <= 2^40), so none overflows int64.
	bitmapOff := (DISKDUMP_HEADER_BLOCKS + int64(d.SubHdrSize)) * bs
	bitmapLen := int64(d.BitmapBlocks) * bs
	if bitmapOff > src.Size() || bitmapLen > src.Size()-bitmapOff {
		return nil, formatErr(name, 436, "bitmap of %d blocks at 0x%x runs past the end of the file (%d bytes)", d.BitmapBlocks, bitmapOff, src.Size())
	}
	needBytes := k.maxMapnr/8 + min(k.maxMapnr%8, 1) // ceil(max_mapnr / 8)
	perBitmap := (needBytes + uint64(bs) - 1) / uint64(bs) * uint64(bs)
	var b1, b2 []byte
	var err error
	if perBitmap > 0 && uint64(d.BitmapBlocks) >= 2*(perBitmap/uint64(bs)) {
		half := int64(d.BitmapBlocks/2) * bs
		if b1, err = loadRegion(src, bitmapOff, uint64(half), "first bitmap", 436); err != nil {
			return nil, err
		}
		if b2, err = loadRegion(src, bitmapOff+half, uint64(half), "second bitmap", 436); err != nil {
			return nil, err
		}
	} else {
		// Only the old diskdump wrote a single bitmap; makedumpfile and
		// QEMU always write two. Reading a "KDUMP" file's two bitmaps as
		// one would serve excluded pages as dumped ones.
		if d.Signature != DISKDUMP_SIGNATURE {
			return nil, formatErr(name, 436, "bitmap of %d blocks cannot hold the two bitmaps of max_mapnr 0x%x pages (%d blocks each)", d.BitmapBlocks, k.maxMapnr, perBitmap/uint64(bs))
		}
		if uint64(bitmapLen) < needBytes {
			return nil, formatErr(name, 436, "bitmap of %d bytes cannot describe max_mapnr %d pages", bitmapLen, k.maxMapnr)
		}
		if b2, err = loadRegion(src, bitmapOff, uint64(bitmapLen), "bitmap", 436); err != nil {
			return nil, err
		}
	}
	k.bitmap1, k.bitmap2 = b1, b2
	k.descOffset = bitmapOff + bitmapLen

	// The pfn range this file holds.
	k.startPFN, k.endPFN = 0, k.maxMapnr
	if k.sub.Split != 0 {
		k.startPFN, k.endPFN = k.sub.StartPFN, k.sub.EndPFN
		if d.HeaderVersion >= 6 {
			k.startPFN, k.endPFN = k.sub.StartPFN64, k.sub.EndPFN64
		}
		if k.startPFN > k.endPFN || k.endPFN > k.maxMapnr {
			return nil, formatErr(name, bs+16, "split range [0x%x, 0x%x) outside max_mapnr 0x%x", k.startPFN, k.endPFN, k.maxMapnr)
		}
	}

	k.buildPrefix()
	k.descBase = k.countBefore(k.startPFN)
	dumped := k.countBefore(k.endPFN) - k.descBase
	// dumped <= 8 * bitmap bytes <= 8 * file size: the product fits.
	if end := uint64(k.descOffset) + dumped*pageDescSize; end > uint64(src.Size()) {
		k.truncated = true
	} else if dumped > 0 && k.lastDataEnd(dumped) > src.Size() {
		k.truncated = true
	}

	// Notes (v4+) and VMCOREINFO (v3+). Their offsets are absolute.
	if d.HeaderVersion >= 4 && k.sub.OffsetNote != 0 && k.sub.SizeNote != 0 {
		buf, err := readRegion(src, k.sub.OffsetNote, k.sub.SizeNote, maxNoteBytes, "notes", bs+48)
		if err != nil {
			return nil, err
		}
		ns, err := ParseNotes(name, buf, k.sub.OffsetNote)
		if err != nil {
			return nil, err
		}
		if k.notes, err = classifyNotes(name, ns); err != nil {
			return nil, err
		}
	}
	if k.notes == nil {
		k.notes = &noteSet{}
	}
	if d.HeaderVersion >= 3 && k.sub.OffsetVMCOREINFO != 0 && k.sub.SizeVMCOREINFO != 0 {
		buf, err := readRegion(src, k.sub.OffsetVMCOREINFO, k.sub.SizeVMCOREINFO, MaxVMCOREINFOSize, "VMCOREINFO", bs+32)
		if err != nil {
			return nil, err
		}
		k.vmcoreinfo, k.vmcoreOff = buf, k.sub.OffsetVMCOREINFO
	} else if k.notes.vmcoreinfo != nil {
		k.vmcoreinfo, k.vmcoreOff = k.notes.vmcoreinfo, k.notes.vmcoreOff
	}
	return k, nil
}

// readRegion copies a table a header places at off: its size is checked
// against limit, the file's end and what the file stores (loadRegion).
// A copy, because notes outlive nothing but are handed to callers.
func readRegion(src source, off int64, size uint64, limit uint64, what string, fieldOff int64) ([]byte, error) {
	if size > limit {
		return nil, formatErr(src.Name(), fieldOff, "%s of %d bytes is larger than %d", what, size, limit)
	}
	b, err := loadRegion(src, off, size, what, fieldOff)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// lastDataEnd finds where the last stored page's data ends. Pages are
// written in pfn order after one shared zero page placed first, so the
// last descriptor that does not point at that zero page tells whether the
// file was cut short (a full disk) even when the header's incomplete flag
// could not be set. The backward scan is bounded.
func (k *kdumpFile) lastDataEnd(dumped uint64) int64 {
	le := binary.LittleEndian
	zeroPage := k.descOffset + int64(dumped)*pageDescSize
	buf := make([]byte, 4096*pageDescSize)
	for end, chunks := dumped, 0; end > 0 && chunks < 64; chunks++ {
		n := min(end, 4096)
		start := end - n
		chunk := buf[:n*pageDescSize]
		if readFull(k.src, chunk, k.descOffset+int64(start)*pageDescSize) != nil {
			return 1<<63 - 1
		}
		for i := int(n) - 1; i >= 0; i-- {
			d := chunk[i*pageDescSize:]
			off, size := int64(le.Uint64(d)), int64(le.Uint32(d[8:]))
			if off == 0 || off < 0 {
				return 1<<63 - 1 // never written
			}
			if off != zeroPage {
				if off > 1<<62 {
					return 1<<63 - 1
				}
				return off + size
			}
		}
		end = start
	}
	return 0
}

// buildPrefix counts the dumped-page bits before every 4096-bit block, the
// only pass over the bitmap an open makes.
func (k *kdumpFile) buildPrefix() {
	b := k.bitmap2
	nblocks := (len(b)*8 + prefixBlockBits - 1) / prefixBlockBits
	k.prefix = make([]uint64, nblocks+1)
	var total uint64
	for i := 0; i < nblocks; i++ {
		k.prefix[i] = total
		start := i * prefixBlockBits / 8
		end := min(start+prefixBlockBits/8, len(b))
		total += popcount(b[start:end])
	}
	k.prefix[nblocks] = total
}

func popcount(b []byte) uint64 {
	var n uint64
	for len(b) >= 8 {
		n += uint64(bits.OnesCount64(binary.LittleEndian.Uint64(b)))
		b = b[8:]
	}
	for _, c := range b {
		n += uint64(bits.OnesCount8(c))
	}
	return n
}

// countBefore returns how many pfns below pfn are dumped.
func (k *kdumpFile) countBefore(pfn uint64) uint64 {
	nbits := uint64(len(k.bitmap2)) * 8
	if pfn >= nbits {
		return k.prefix[len(k.prefix)-1]
	}
	blk := pfn / prefixBlockBits
	n := k.prefix[blk]
	start := blk * prefixBlockBits / 8
	full := (pfn - blk*prefixBlockBits) / 8
	n += popcount(k.bitmap2[start : start+full])
	if r := pfn % 8; r != 0 {
		n += uint64(bits.OnesCount8(k.bitmap2[start+full] & (1<<r - 1)))
	}
	return n
}

func bitSet(b []byte, pfn uint64) bool {
	i := pfn / 8
	return i < uint64(len(b)) && b[i]&(1<<(pfn%8)) != 0
}

// pageDesc is struct page_desc.
type pageDesc struct {
	Offset    int64
	Size      uint32
	Flags     uint32
	PageFlags uint64
}

// descriptor finds pfn's page_desc; the error says why there is none.
func (k *kdumpFile) descriptor(pfn uint64) (pageDesc, int64, error) {
	addr := pfn * uint64(k.pageSize)
	name := k.src.Name()
	if pfn >= k.maxMapnr {
		return pageDesc{}, -1, &PhysError{Addr: addr, File: name, Offset: -1, Err: ErrNotPresent, Detail: fmt.Sprintf("beyond max_mapnr 0x%x", k.maxMapnr)}
	}
	if !bitSet(k.bitmap2, pfn) {
		if k.bitmap1 != nil && !bitSet(k.bitmap1, pfn) {
			return pageDesc{}, -1, &PhysError{Addr: addr, File: name, Offset: -1, Err: ErrNotPresent, Detail: "memory hole"}
		}
		return pageDesc{}, -1, &PhysError{Addr: addr, File: name, Offset: -1, Err: ErrExcluded, Detail: fmt.Sprintf("filtered out at dump level %d", k.sub.DumpLevel)}
	}
	idx := k.countBefore(pfn) - k.descBase
	off := k.descOffset + int64(idx)*pageDescSize
	var b [pageDescSize]byte
	if err := readFull(k.src, b[:], off); err != nil {
		return pageDesc{}, off, &PhysError{Addr: addr, File: name, Offset: off, Err: ErrIncomplete, Detail: "page descriptor beyond the end of the file"}
	}
	le := binary.LittleEndian
	pd := pageDesc{int64(le.Uint64(b[0:])), le.Uint32(b[8:]), le.Uint32(b[12:]), le.Uint64(b[16:])}
	if pd.Offset == 0 {
		return pd, off, &PhysError{Addr: addr, File: name, Offset: off, Err: ErrIncomplete, Detail: "page descriptor never written"}
	}
	return pd, off, nil
}

// readPage returns page pfn: a zero-copy view of the file for a raw page
// (viewed true), else the page decoded into dst.
func (k *kdumpFile) readPage(pfn uint64, dst []byte) (page []byte, viewed bool, err error) {
	pd, descOff, err := k.descriptor(pfn)
	if err != nil {
		return nil, false, err
	}
	addr := pfn * uint64(k.pageSize)
	name := k.src.Name()
	c, cerr := compressionOf(pd.Flags)
	if cerr != nil || pd.Size == 0 || int(pd.Size) > k.pageSize || pd.Offset < 0 {
		detail := fmt.Sprintf("descriptor says %d bytes at 0x%x, flags 0x%x", pd.Size, pd.Offset, pd.Flags)
		return nil, false, &PhysError{Addr: addr, File: name, Offset: descOff, Err: ErrCorrupt, Detail: detail}
	}
	if pd.Offset > k.src.Size() || int64(pd.Size) > k.src.Size()-pd.Offset {
		return nil, false, &PhysError{Addr: addr, File: name, Offset: pd.Offset, Err: ErrIncomplete, Detail: "page data beyond the end of the file"}
	}
	src, ok := k.src.view(pd.Offset, int(pd.Size))
	if ok && c == CompressionNone && int(pd.Size) == k.pageSize {
		return src, true, nil
	}
	if !ok {
		src = make([]byte, pd.Size)
		if err := readFull(k.src, src, pd.Offset); err != nil {
			return nil, false, &PhysError{Addr: addr, File: name, Offset: pd.Offset, Err: ErrIncomplete, Detail: err.Error()}
		}
	}
	if err := decompressPage(c, src, dst); err != nil {
		return nil, false, &PhysError{Addr: addr, File: name, Offset: pd.Offset, Err: ErrCorrupt, Detail: fmt.Sprintf("%v page: %v", c, err)}
	}
	return dst, false, nil
}

func (k *kdumpFile) incomplete() bool {
	return k.truncated || k.hdr.Status&DUMP_DH_COMPRESSED_INCOMPLETE != 0
}

// dumpedPages counts this file's dumped pages; excludedPages counts pages
// that exist in memory but were filtered (0 for one-bitmap files).
func (k *kdumpFile) dumpedPages() uint64 { return k.countBefore(k.endPFN) - k.descBase }

func (k *kdumpFile) existingPages() uint64 {
	if k.bitmap1 == nil {
		return k.dumpedPages()
	}
	return countRange(k.bitmap1, k.startPFN, k.endPFN)
}

func countRange(b []byte, start, end uint64) uint64 {
	var n uint64
	for p := start; p < end && p%8 != 0; p++ {
		if bitSet(b, p) {
			n++
		}
	}
	s := (start + 7) / 8
	e := end / 8
	if e > uint64(len(b)) {
		e = uint64(len(b))
	}
	if s < e {
		n += popcount(b[s:e])
		for p := e * 8; p < end; p++ {
			if bitSet(b, p) {
				n++
			}
		}
	}
	return n
}

// compressions scans every descriptor of the file and reports the page
// encodings it uses. It reads the whole descriptor table, so it is for
// `info`, not for opening.
func (k *kdumpFile) compressions() (map[Compression]uint64, error) {
	seen := map[Compression]uint64{}
	n := k.dumpedPages()
	buf := make([]byte, 4096*pageDescSize)
	le := binary.LittleEndian
	for i := uint64(0); i < n; {
		cnt := min(n-i, 4096)
		off := k.descOffset + int64(i)*pageDescSize
		chunk := buf[:cnt*pageDescSize]
		got, _ := k.src.ReadAt(chunk, off)
		full := uint64(got) / pageDescSize
		for j := uint64(0); j < full; j++ {
			d := chunk[j*pageDescSize:]
			if le.Uint64(d[0:]) == 0 {
				continue // never written (incomplete dump)
			}
			c, err := compressionOf(le.Uint32(d[12:]))
			if err != nil {
				return seen, formatErr(k.src.Name(), off+int64(j)*pageDescSize, "%v", err)
			}
			seen[c]++
		}
		if full < cnt {
			break // truncated file
		}
		i += cnt
	}
	return seen, nil
}
