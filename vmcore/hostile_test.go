package vmcore

// Hostile and damaged files: sizes read from headers that would drive huge
// allocations or wrap around, and files that are not files at all. Each
// case reproduces a reported defect; the same bytes are fuzz seeds
// (TestWriteFuzzCorpus).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// allocated returns the bytes the Go heap handed out while f ran. The
// bound it is checked against is loose (tens of times the input), so a
// parser that allocates what a header claims fails it by orders of
// magnitude.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocBound is what opening a file of n bytes may allocate: notes,
// VMCOREINFO maps and the flattened index cost a small multiple of the
// bytes they come from, plus a fixed amount for the cache and pools.
func allocBound(n int) uint64 { return 64*uint64(n) + 4<<20 }

// flatRecords writes a flattened stream of the given records.
func flatRecords(recs ...flatRec) []byte {
	out := make([]byte, MAX_SIZE_MDF_HEADER)
	copy(out, MAKEDUMPFILE_SIGNATURE)
	be := binary.BigEndian
	be.PutUint64(out[16:], TYPE_FLAT_HEADER)
	be.PutUint64(out[24:], VERSION_FLAT_HEADER)
	for _, r := range recs {
		out = be.AppendUint64(out, uint64(r.off))
		out = be.AppendUint64(out, uint64(len(r.data)))
		out = append(out, r.data...)
	}
	out = be.AppendUint64(out, math.MaxUint64)
	return be.AppendUint64(out, math.MaxUint64)
}

type flatRec struct {
	off  int64
	data []byte
}

// kdumpHeaders returns a disk_dump_header and a v6 kdump_sub_header.
func kdumpHeaders(bs int, bitmapBlocks uint32, maxMapnr uint64) (hdr, sub []byte) {
	le := binary.LittleEndian
	hdr = make([]byte, diskDumpHeaderSize)
	copy(hdr, KDUMP_SIGNATURE)
	le.PutUint32(hdr[8:], 6)
	le.PutUint32(hdr[428:], uint32(bs))
	le.PutUint32(hdr[432:], 1)
	le.PutUint32(hdr[436:], bitmapBlocks)
	le.PutUint32(hdr[440:], uint32(maxMapnr))
	le.PutUint32(hdr[460:], 1)
	sub = make([]byte, kdumpSubHeaderSize)
	le.PutUint64(sub[96:], maxMapnr)
	return hdr, sub
}

// hugeFlatKdump is the reported reproducer: a few KB of flattened stream
// whose one far record makes the rearranged file 2^40 or more bytes, so a
// bitmap of billions of blocks "fits".
func hugeFlatKdump(bs int, bitmapBlocks uint32, maxMapnr uint64, far int64) []byte {
	hdr, sub := kdumpHeaders(bs, bitmapBlocks, maxMapnr)
	return flatRecords(flatRec{0, hdr}, flatRec{int64(bs), sub}, flatRec{far, []byte("far away")})
}

// hugeFlatELF: an ELF core whose PN_XNUM program header count (2^20) and
// PT_NOTE size (64 MiB) fit only in the rearranged size.
func hugeFlatELF(far int64) []byte {
	le := binary.LittleEndian
	eh := make([]byte, elf64EhdrSize)
	copy(eh, elfMagic)
	eh[4], eh[5], eh[6] = ELFCLASS64, ELFDATA2LSB, 1
	le.PutUint16(eh[16:], ET_CORE)
	le.PutUint16(eh[18:], EM_X86_64)
	le.PutUint64(eh[32:], 0x1000) // e_phoff
	le.PutUint64(eh[40:], 0x100)  // e_shoff
	le.PutUint16(eh[54:], elf64PhdrSize)
	le.PutUint16(eh[56:], PN_XNUM)
	sh := make([]byte, elf64ShdrSize)
	le.PutUint32(sh[44:], maxProgramHeaders) // sh_info: the real e_phnum
	return flatRecords(flatRec{0, eh}, flatRec{0x100, sh}, flatRec{far, []byte("far away")})
}

func TestHostileSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want string // in the error
	}{
		// The report: 2^40, a bitmap of 2^27 blocks for 2^40 pages.
		{"flat-kdump-2^40", hugeFlatKdump(4096, 1<<27, 1<<40, 1<<40), "bitmap"},
		{"flat-kdump-2^62", hugeFlatKdump(4096, math.MaxUint32, 1<<40, 1<<62), "bitmap"},
		{"flat-kdump-256k-blocks", hugeFlatKdump(256<<10, math.MaxUint32, 1<<34, 1<<62), "bitmap"},
		// makeslice: len out of range, with 1 MiB blocks.
		{"flat-kdump-1MiB-blocks", hugeFlatKdump(1<<20, math.MaxUint32, 1<<32, 1<<62), "block_size"},
		{"flat-elf-2^40", hugeFlatELF(1 << 40), "program header table"},
		{"flat-elf-2^62", hugeFlatELF(1 << 62), "program header table"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			start := time.Now()
			n := allocated(func() { _, err = OpenBytes(c.name, c.data) })
			if err == nil {
				t.Fatalf("%d-byte file opened", len(c.data))
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.File != c.name || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line naming %s and %q", err, c.name, c.want)
			}
			if n > allocBound(len(c.data)) {
				t.Errorf("opening a %d-byte file allocated %d bytes", len(c.data), n)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("opening a %d-byte file took %v", len(c.data), d)
			}
		})
	}
	// Through a real file and mmap, as a user runs it.
	path := filepath.Join(t.TempDir(), "flat.vmcore")
	data := hugeFlatKdump(4096, 1<<27, 1<<40, 1<<40)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if n := allocated(func() { _, err = Open(path) }); n > allocBound(len(data)) {
		t.Errorf("Open of a %d-byte file allocated %d bytes", len(data), n)
	}
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open: %v, want an error naming %s", err, path)
	}
}

// maxMapnrKdump is a small v6 kdump with excluded pages and holes, and the
// offset of its max_mapnr_64 field.
func maxMapnrKdump(t *testing.T) (img []byte, exists map[uint64]bool, pages map[uint64][]byte, field int) {
	const maxMapnr = 64
	exists, pages = testPages(rand.New(rand.NewSource(9)), maxMapnr)
	s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: maxMapnr, exists: exists, pages: pages, enc: CompressionZlib, dumpLevel: 31}
	img = s.bytes()
	excluded := 0
	for p := range exists {
		if pages[p] == nil {
			excluded++
		}
	}
	if excluded == 0 {
		t.Fatal("test dump has no excluded page")
	}
	return img, exists, pages, 4096 + 96
}

// A max_mapnr that wraps (max+7)/8 to 0, or that the bitmaps cannot hold,
// must never make an excluded page read as data.
func TestHostileMaxMapnr(t *testing.T) {
	le := binary.LittleEndian
	for _, c := range []struct {
		name     string
		maxMapnr uint64
		refuse   bool
	}{
		{"2^64-1", math.MaxUint64, true},
		{"2^64-7", math.MaxUint64 - 6, true},
		{"2^61", 1 << 61, true},
		{"2^40+1", 1<<40 + 1, true},       // past 52-bit physical addresses
		{"past-two-bitmaps", 32769, true}, // two 1-block bitmaps hold 32768 bits
		{"bitmap-capacity", 32768, false}, // consistent: extra pfns are holes
		{"exact", 64, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, exists, pages, field := maxMapnrKdump(t)
			le.PutUint64(img[field:], c.maxMapnr)
			d, err := OpenBytes(c.name, img)
			if c.refuse {
				var fe *FormatError
				if err == nil || !errors.As(err, &fe) || fe.File != c.name || !strings.Contains(err.Error(), "max_mapnr") {
					t.Fatalf("max_mapnr 0x%x: got %v, want a format error naming the file and max_mapnr", c.maxMapnr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			for p := uint64(0); p < 64; p++ {
				_, err := d.ReadPhys(buf, p*4096)
				switch {
				case pages[p] != nil:
					if err != nil || string(buf) != string(pages[p]) {
						t.Fatalf("pfn %d: %v", p, err)
					}
				case exists[p]:
					if !errors.Is(err, ErrExcluded) {
						t.Fatalf("excluded pfn %d: got %v, want ErrExcluded", p, err)
					}
					if !strings.Contains(err.Error(), c.name) {
						t.Errorf("error %q does not name the file", err)
					}
				default:
					if !errors.Is(err, ErrNotPresent) {
						t.Fatalf("hole pfn %d: got %v, want ErrNotPresent", p, err)
					}
				}
			}
		})
	}
	// The 32-bit field of a v5 file: 0xffffffff pages need a bitmap of
	// 512 MiB that the file does not have.
	img, _, _, _ := maxMapnrKdump(t)
	le.PutUint32(img[8:], 5)
	le.PutUint32(img[440:], math.MaxUint32)
	if _, err := OpenBytes("v5", img); err == nil || !strings.Contains(err.Error(), "max_mapnr") {
		t.Errorf("v5 max_mapnr 0xffffffff: %v", err)
	}
}

// block_size is the page size: absurd values are refused in one line, page
// sizes Linux uses open and keep the page cache within its byte bound.
func TestHostileBlockSize(t *testing.T) {
	for _, bs := range []int{0, 512, 1024, 3000, 4095, 512 << 10, 1 << 20, 1 << 30, -4096} {
		img, _, _, _ := maxMapnrKdump(t)
		binary.LittleEndian.PutUint32(img[428:], uint32(int32(bs)))
		name := fmt.Sprintf("bs-%d", bs)
		_, err := OpenBytes(name, img)
		var fe *FormatError
		if err == nil || !errors.As(err, &fe) || fe.File != name || fe.Offset != 428 || !strings.Contains(err.Error(), "block_size") {
			t.Errorf("block_size %d: got %v, want a format error at offset 428", bs, err)
		}
	}
	for _, bs := range []int{4096, 16384, 65536, 256 << 10} {
		const maxMapnr = 40
		exists, pages := map[uint64]bool{}, map[uint64][]byte{}
		r := rand.New(rand.NewSource(int64(bs)))
		for p := uint64(0); p < maxMapnr; p++ {
			exists[p] = true
			if p%3 != 0 {
				pages[p] = make([]byte, bs)
				r.Read(pages[p][:bs/2])
			}
		}
		s := &synthKdump{version: 6, pageSize: bs, maxMapnr: maxMapnr, exists: exists, pages: pages, enc: CompressionZlib}
		d, err := OpenBytes(fmt.Sprintf("bs-%d", bs), s.bytes())
		if err != nil {
			t.Fatalf("block_size %d: %v", bs, err)
		}
		buf := make([]byte, bs)
		for p := uint64(0); p < maxMapnr; p++ {
			_, err := d.ReadPhys(buf, p*uint64(bs))
			if pages[p] != nil && (err != nil || string(buf) != string(pages[p])) {
				t.Fatalf("block_size %d pfn %d: %v", bs, p, err)
			}
			if pages[p] == nil && !errors.Is(err, ErrExcluded) {
				t.Fatalf("block_size %d pfn %d: got %v, want ErrExcluded", bs, p, err)
			}
		}
		if got := d.cache.capacity * d.cache.pageSize; got > DefaultCacheBytes || d.cache.pageSize != bs {
			t.Errorf("block_size %d: cache of %d pages of %d bytes, bound %d", bs, d.cache.capacity, d.cache.pageSize, DefaultCacheBytes)
		}
	}
}

// Fill a cache with more pages than it holds: the bytes it keeps never
// exceed its bound.
func TestPageCacheBytes(t *testing.T) {
	for _, ps := range []int{4096, 1 << 20} {
		c := newPageCache(8<<20, ps)
		page := make([]byte, ps)
		for pfn := uint64(0); pfn < 100; pfn++ {
			page[0] = byte(pfn)
			c.put(pfn, page)
		}
		held := len(c.m) * ps
		if held > 8<<20 || len(c.m) != min(100, 8<<20/ps) {
			t.Errorf("page size %d: %d pages cached (%d bytes), bound 8 MiB", ps, len(c.m), held)
		}
		got := make([]byte, 1)
		if !c.copyOut(99, 0, got) || got[0] != 99 {
			t.Errorf("page size %d: the newest page is not cached", ps)
		}
	}
}

// A FIFO, a character device, a socket or a directory given as the dump is
// refused at once, in one line naming it; Open must not block on a FIFO
// that has no writer.
func TestOpenNonRegular(t *testing.T) {
	fixtures.CheckRefusesNonRegular(t, "vmcore", func(path string) (io.Closer, error) { return Open(path) })
	// A regular file still opens, through a symlink too.
	dir := t.TempDir()
	img := smallKdump(CompressionZlib, 6)
	reg := filepath.Join(dir, "vmcore")
	if err := os.WriteFile(reg, img, 0o400); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(reg, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{reg, link} {
		d, err := Open(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if d.Format() != FormatKdump {
			t.Errorf("%s: format %v", p, d.Format())
		}
		d.Close()
	}
}

// Errors about the dump as a whole name the file, and the offset where one
// applies.
func TestErrorsNameTheFile(t *testing.T) {
	// No VMCOREINFO at all.
	s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: 8, exists: map[uint64]bool{}, pages: map[uint64][]byte{}}
	d, err := OpenBytes("no-info.kdump", s.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.VMCOREINFO(); err == nil || !strings.HasPrefix(err.Error(), "no-info.kdump: ") {
		t.Errorf("VMCOREINFO of a dump without it: %v", err)
	}
	// A malformed line: its absolute offset in the file.
	const bad = "PAGESIZE=3\n"
	for _, c := range []struct {
		name string
		img  []byte
	}{
		{"bad-info.kdump", (&synthKdump{version: 6, pageSize: 4096, maxMapnr: 8, vmcoreinfo: "OSRELEASE=x\n" + bad}).bytes()},
		{"bad-info.elf", synthELF(elfNote("VMCOREINFO", 0, []byte("OSRELEASE=x\n"+bad)), []synthSeg{{paddr: 0, filesz: 0x1000, memsz: 0x1000}}, func(uint64) byte { return 0 }, 0)},
	} {
		d, err := OpenBytes(c.name, c.img)
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.VMCOREINFO()
		want := fmt.Sprintf("%s: offset 0x%x: ", c.name, strings.Index(string(c.img), bad))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v, want it to start %q", c.name, err, want)
		}
	}
}

// ELF headers: every size is checked against the file and the machine.
func TestHostileELF(t *testing.T) {
	le := binary.LittleEndian
	base := func() []byte {
		return synthELF(prstatusNote(1, 2, 3), []synthSeg{{paddr: 0x1000, filesz: 0x1000, memsz: 0x3000}}, func(a uint64) byte { return byte(a >> 4) }, 0)
	}
	load := elf64EhdrSize + elf64PhdrSize // the PT_LOAD's header
	note := elf64EhdrSize
	for _, c := range []struct {
		name  string
		patch func(b []byte)
		want  string // "" means it opens
	}{
		{"ok", func([]byte) {}, ""},
		{"paddr-beyond-52-bits", func(b []byte) { le.PutUint64(b[load+24:], 1<<52) }, "physical"},
		{"memsz-beyond-52-bits", func(b []byte) { le.PutUint64(b[load+40:], 1<<52) }, "physical"},
		{"memsz-wraps", func(b []byte) { le.PutUint64(b[load+40:], math.MaxUint64) }, "physical"},
		{"filesz-over-memsz", func(b []byte) { le.PutUint64(b[load+32:], 0x4000) }, "p_filesz"},
		{"note-huge", func(b []byte) { le.PutUint64(b[note+32:], 1<<40) }, "PT_NOTE"},
		{"note-past-end", func(b []byte) { le.PutUint64(b[note+8:], 1<<20) }, "PT_NOTE"},
		{"note-negative-offset", func(b []byte) { le.PutUint64(b[note+8:], 1<<63) }, "p_offset"},
		{"phnum-past-end", func(b []byte) { le.PutUint16(b[56:], 0xfff0) }, "program header table"},
		{"phoff-huge", func(b []byte) { le.PutUint64(b[32:], math.MaxUint64-8) }, "e_phoff"},
		{"pn_xnum-no-section", func(b []byte) { le.PutUint16(b[56:], PN_XNUM) }, "PN_XNUM"},
		{"note-descsz-huge", func(b []byte) { le.PutUint32(b[elf64EhdrSize+2*elf64PhdrSize+4:], math.MaxUint32) }, "note"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := base()
			c.patch(img)
			var d *Dump
			var err error
			if n := allocated(func() { d, err = OpenBytes(c.name, img) }); n > allocBound(len(img)) {
				t.Errorf("allocated %d bytes for a %d-byte file", n, len(img))
			}
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				// p_memsz beyond p_filesz reads as zeros.
				buf := make([]byte, 16)
				if _, err := d.ReadPhys(buf, 0x2000); err != nil || string(buf) != string(make([]byte, 16)) {
					t.Errorf("memsz tail: %v %x", err, buf)
				}
				if pc := d.PageCounts(); pc.Dumped != 1 {
					t.Errorf("dumped pages %d, want 1", pc.Dumped)
				}
				return
			}
			var fe *FormatError
			if err == nil || !errors.As(err, &fe) || fe.File != c.name || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want a format error naming the file and %q", err, c.want)
			}
		})
	}
}

// A PT_LOAD cut short by the end of the file counts only the pages the
// file holds, and reads past the cut report the file and offset.
func TestELFTruncatedLoad(t *testing.T) {
	img := synthELF(nil, []synthSeg{{paddr: 0, filesz: 0x4000, memsz: 0x4000}}, func(a uint64) byte { return 1 }, 0)
	img = img[:len(img)-0x2800]
	d, err := OpenBytes("cut.elf", img)
	if err != nil {
		t.Fatal(err)
	}
	if pc := d.PageCounts(); pc.Dumped != 2 {
		t.Errorf("dumped pages %d, want 2 (the file holds 0x1800 bytes of the PT_LOAD)", pc.Dumped)
	}
	_, err = d.ReadPhys(make([]byte, 16), 0x3000)
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "cut.elf") {
		t.Errorf("read past the cut: %v", err)
	}
}

// Many PT_NOTE headers naming one large note area: the notes together are
// bounded, not each one.
func TestHostileManyPTNotes(t *testing.T) {
	le := binary.LittleEndian
	const nph = 2000
	area := make([]byte, 1<<20)
	for off := 0; off+12 <= len(area); {
		n := elfNote("X", 7, make([]byte, 4096))
		if off+len(n) > len(area) {
			break
		}
		copy(area[off:], n)
		off += len(n)
	}
	img := synthELF(nil, []synthSeg{{paddr: 0, filesz: 0x1000, memsz: 0x1000}}, func(uint64) byte { return 0 }, 0)
	// Move the program headers to the end and append nph PT_NOTEs that
	// all name area.
	areaOff := len(img)
	img = append(img, area...)
	phoff := len(img)
	img = append(img, img[elf64EhdrSize+elf64PhdrSize:elf64EhdrSize+2*elf64PhdrSize]...) // the PT_LOAD
	for i := 0; i < nph; i++ {
		ph := make([]byte, elf64PhdrSize)
		le.PutUint32(ph[0:], PT_NOTE)
		le.PutUint64(ph[8:], uint64(areaOff))
		le.PutUint64(ph[32:], uint64(len(area)))
		img = append(img, ph...)
	}
	le.PutUint64(img[32:], uint64(phoff))
	le.PutUint16(img[56:], nph+1)
	var err error
	if n := allocated(func() { _, err = OpenBytes("notes.elf", img) }); n > allocBound(len(img)) {
		t.Errorf("%d-byte file allocated %d bytes", len(img), n)
	}
	if err == nil || !strings.Contains(err.Error(), "in all") || !strings.HasPrefix(err.Error(), "notes.elf: ") {
		t.Errorf("got %v, want the notes' total refused", err)
	}
}

// nr_cpus is a count from a header: beyond NR_CPUS it is not believed.
func TestHostileNrCPUs(t *testing.T) {
	for _, c := range []struct {
		nr   uint32
		want int
	}{{2, 2}, {8192, 8192}, {2147483647, 1}, {0xffffffff, 1}, {8193, 1}} {
		s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: 8, notes: prstatusNote(1, 2, 3)}
		img := s.bytes()
		binary.LittleEndian.PutUint32(img[460:], c.nr)
		d, err := OpenBytes("cpus.kdump", img)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.CPUs(); got != c.want {
			t.Errorf("nr_cpus %d: CPUs() = %d, want %d (one NT_PRSTATUS note)", c.nr, got, c.want)
		}
	}
}
