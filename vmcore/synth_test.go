package vmcore

// A test-side writer of makedumpfile's kdump, flattened and ELF formats,
// for the corner cases Debian's makedumpfile cannot produce: snappy and
// zstd pages, old header versions, split sets, incomplete and damaged
// files. The layout follows makedumpfile's IMPLEMENTATION notes.

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"math/rand"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
)

type synthKdump struct {
	version    int32
	pageSize   int
	maxMapnr   uint64
	exists     map[uint64]bool   // pfns in the first bitmap
	pages      map[uint64][]byte // dumped pages (a subset of exists)
	enc        Compression
	dumpLevel  int32
	vmcoreinfo string
	notes      []byte
	status     uint32
	split      bool
	start, end uint64 // split range
	shareZero  bool   // store all-zero pages once, as makedumpfile -d 1 does
	oneBitmap  bool   // old diskdump: a single bitmap of dumped pages
}

func compressPage(c Compression, page []byte) []byte {
	var out []byte
	switch c {
	case CompressionZlib:
		var b bytes.Buffer
		w, _ := zlib.NewWriterLevel(&b, zlib.BestSpeed)
		w.Write(page)
		w.Close()
		out = b.Bytes()
	case CompressionSnappy:
		out = snappy.Encode(nil, page)
	case CompressionZstd:
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		out = enc.EncodeAll(page, nil)
	default:
		return nil
	}
	return out
}

func (s *synthKdump) bytes() []byte {
	le := binary.LittleEndian
	bs := s.pageSize
	if s.end == 0 {
		s.end = s.maxMapnr
	}
	note := s.notes
	if s.vmcoreinfo != "" {
		note = append(append([]byte(nil), note...), elfNote("VMCOREINFO", 0, []byte(s.vmcoreinfo))...)
	}
	subHdrBlocks := (kdumpSubHeaderSize + len(note) + bs - 1) / bs
	perBitmap := int((s.maxMapnr+7)/8+uint64(bs)-1) / bs * bs
	bitmapBlocks := 2 * perBitmap / bs
	if s.oneBitmap {
		bitmapBlocks = perBitmap / bs
	}
	descOff := (1 + subHdrBlocks + bitmapBlocks) * bs
	var pfns []uint64
	for p := s.start; p < s.end; p++ {
		if s.pages[p] != nil {
			pfns = append(pfns, p)
		}
	}
	dataOff := descOff + len(pfns)*pageDescSize
	out := make([]byte, dataOff)
	// header
	copy(out, KDUMP_SIGNATURE)
	if s.oneBitmap {
		copy(out, DISKDUMP_SIGNATURE) // only the old diskdump wrote one bitmap
	}
	le.PutUint32(out[8:], uint32(s.version))
	copy(out[12+65*2:], "6.1.0-synthetic")
	copy(out[12+65*4:], "x86_64")
	le.PutUint32(out[424:], s.status)
	le.PutUint32(out[428:], uint32(bs))
	le.PutUint32(out[432:], uint32(subHdrBlocks))
	le.PutUint32(out[436:], uint32(bitmapBlocks))
	le.PutUint32(out[440:], uint32(s.maxMapnr))
	le.PutUint32(out[460:], 2)
	// sub-header
	sh := out[bs:]
	le.PutUint32(sh[8:], uint32(s.dumpLevel))
	if s.split {
		le.PutUint32(sh[12:], 1)
		le.PutUint64(sh[16:], s.start)
		le.PutUint64(sh[24:], s.end)
		le.PutUint64(sh[80:], s.start)
		le.PutUint64(sh[88:], s.end)
	}
	noteOff := bs + kdumpSubHeaderSize
	copy(out[noteOff:], note)
	if s.version >= 3 && s.vmcoreinfo != "" {
		vi := noteOff + len(note) - len(alignPad(s.vmcoreinfo))
		le.PutUint64(sh[32:], uint64(vi))
		le.PutUint64(sh[40:], uint64(len(s.vmcoreinfo)))
	}
	if s.version >= 4 && len(note) > 0 {
		le.PutUint64(sh[48:], uint64(noteOff))
		le.PutUint64(sh[56:], uint64(len(note)))
	}
	le.PutUint64(sh[96:], s.maxMapnr)
	// bitmaps
	b1 := out[(1+subHdrBlocks)*bs:]
	b2 := b1[perBitmap:]
	if s.oneBitmap {
		b2 = b1
	}
	for p := uint64(0); p < s.maxMapnr; p++ {
		if s.exists[p] && !s.oneBitmap {
			b1[p/8] |= 1 << (p % 8)
		}
		if s.pages[p] != nil {
			b2[p/8] |= 1 << (p % 8)
		}
	}
	// descriptors and data
	var zeroOff int64 = -1
	for i, p := range pfns {
		page := s.pages[p]
		d := out[descOff+i*pageDescSize:]
		if s.shareZero && bytes.Equal(page, make([]byte, bs)) {
			if zeroOff < 0 {
				zeroOff = int64(len(out))
				out = append(out, page...)
				d = out[descOff+i*pageDescSize:]
			}
			le.PutUint64(d[0:], uint64(zeroOff))
			le.PutUint32(d[8:], uint32(bs))
			continue
		}
		stored, flags := page, uint32(0)
		if c := compressPage(s.enc, page); c != nil && len(c) < bs {
			stored, flags = c, uint32(s.enc)
		}
		off := len(out)
		out = append(out, stored...)
		d = out[descOff+i*pageDescSize:]
		le.PutUint64(d[0:], uint64(off))
		le.PutUint32(d[8:], uint32(len(stored)))
		le.PutUint32(d[12:], flags)
	}
	return out
}

func alignPad(s string) []byte {
	b := []byte(s)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// elfNote encodes one note with 4-byte alignment, as the kernel does.
func elfNote(name string, typ uint32, desc []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = append(b, alignPad(name+"\x00")...)
	b = append(b, alignPad(string(desc))...)
	return b
}

// prstatusNote builds an NT_PRSTATUS note with pid and rip set.
func prstatusNote(pid int32, rip, rsp uint64) []byte {
	desc := make([]byte, CorePRStatusSize)
	binary.LittleEndian.PutUint32(desc[CorePRStatusPIDOff:], uint32(pid))
	binary.LittleEndian.PutUint64(desc[CorePRStatusRegOff+16*8:], rip)
	binary.LittleEndian.PutUint64(desc[CorePRStatusRegOff+19*8:], rsp)
	return elfNote("CORE", NT_PRSTATUS, desc)
}

// flatten rewrites a file image as a flattened stream: records in a
// shuffled order, split at chunk bytes, plus a late rewrite of the first
// block to exercise last-record-wins.
func flatten(img []byte, chunk int, seed int64) []byte {
	out := make([]byte, MAX_SIZE_MDF_HEADER)
	copy(out, MAKEDUMPFILE_SIGNATURE)
	binary.BigEndian.PutUint64(out[16:], TYPE_FLAT_HEADER)
	binary.BigEndian.PutUint64(out[24:], VERSION_FLAT_HEADER)
	type rec struct{ off, n int }
	var recs []rec
	for off := 0; off < len(img); off += chunk {
		recs = append(recs, rec{off, min(chunk, len(img)-off)})
	}
	r := rand.New(rand.NewSource(seed))
	if seed != 0 { // seed 0: keep file order, as makedumpfile writes
		r.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	}
	// A first record of garbage over block 0, later overwritten for real.
	recs = append([]rec{{-1, 0}}, recs...)
	for _, rc := range recs {
		if rc.off == -1 {
			out = binary.BigEndian.AppendUint64(out, 0)
			out = binary.BigEndian.AppendUint64(out, 64)
			out = append(out, bytes.Repeat([]byte{0xee}, 64)...)
			continue
		}
		out = binary.BigEndian.AppendUint64(out, uint64(rc.off))
		out = binary.BigEndian.AppendUint64(out, uint64(rc.n))
		out = append(out, img[rc.off:rc.off+rc.n]...)
	}
	out = binary.BigEndian.AppendUint64(out, ^uint64(0))
	out = binary.BigEndian.AppendUint64(out, ^uint64(0))
	return out
}

// synthELF builds an ELF vmcore with the given notes and PT_LOADs whose
// file data is taken from mem (indexed by physical address).
type synthSeg struct {
	vaddr, paddr, filesz, memsz uint64
}

func synthELF(notes []byte, segs []synthSeg, mem func(paddr uint64) byte, flags uint32) []byte {
	le := binary.LittleEndian
	phnum := 1 + len(segs)
	hdr := make([]byte, elf64EhdrSize+phnum*elf64PhdrSize)
	copy(hdr, elfMagic)
	hdr[4], hdr[5], hdr[6] = ELFCLASS64, ELFDATA2LSB, 1
	le.PutUint16(hdr[16:], ET_CORE)
	le.PutUint16(hdr[18:], EM_X86_64)
	le.PutUint32(hdr[20:], 1)
	le.PutUint64(hdr[32:], elf64EhdrSize)
	le.PutUint32(hdr[48:], flags)
	le.PutUint16(hdr[52:], elf64EhdrSize)
	le.PutUint16(hdr[54:], elf64PhdrSize)
	le.PutUint16(hdr[56:], uint16(phnum))
	out := hdr
	noteOff := len(out)
	out = append(out, notes...)
	ph := out[elf64EhdrSize:]
	le.PutUint32(ph[0:], PT_NOTE)
	le.PutUint64(ph[8:], uint64(noteOff))
	le.PutUint64(ph[32:], uint64(len(notes)))
	le.PutUint64(ph[40:], uint64(len(notes)))
	for i, s := range segs {
		off := len(out)
		for a := s.paddr; a < s.paddr+s.filesz; a++ {
			out = append(out, mem(a))
		}
		ph := out[elf64EhdrSize+(i+1)*elf64PhdrSize:]
		le.PutUint32(ph[0:], PT_LOAD)
		le.PutUint64(ph[8:], uint64(off))
		le.PutUint64(ph[16:], s.vaddr)
		le.PutUint64(ph[24:], s.paddr)
		le.PutUint64(ph[32:], s.filesz)
		le.PutUint64(ph[40:], s.memsz)
	}
	return out
}
