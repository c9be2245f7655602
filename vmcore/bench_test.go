package vmcore

import (
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/synthdump"
	"math/rand"
	"path/filepath"
	"testing"
)

// Benchmarks on the real fixtures (make bench). Each page-read benchmark
// has a twin that runs the bare decompressor on the same stored pages, so
// the server's overhead is the ratio of the two.

// pagesOf returns up to n pfns stored with encoding c.
func pagesOf(d *Dump, c Compression, n int) []uint64 {
	var out []uint64
	for _, k := range d.parts {
		for pfn := k.startPFN; pfn < k.endPFN && len(out) < n; pfn++ {
			if !bitSet(k.bitmap2, pfn) {
				continue
			}
			if e, err := d.PageEncoding(pfn); err == nil && e == c {
				out = append(out, pfn)
			}
		}
	}
	return out
}

func benchRead(b *testing.B, d *Dump, pfns []uint64, warm bool) {
	if len(pfns) == 0 {
		b.Fatal("no pages of that kind in the fixture")
	}
	if !warm {
		// A cache far smaller than the page set: every read decodes.
		old := d.cache
		d.cache = newPageCache(64*int(d.pageSize), int(d.pageSize))
		defer func() { d.cache = old }()
	}
	buf := make([]byte, 4096)
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pfn := pfns[0]
		if !warm {
			pfn = pfns[i%len(pfns)]
		}
		if _, err := d.ReadPhys(buf, pfn*4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadPage(b *testing.B) {
	for _, c := range []struct {
		name string
		file string
		enc  Compression
	}{
		{"lzo", "oom/vmcore.lzo", CompressionLZO},
		{"zlib", "oom/vmcore.zlib", CompressionZlib},
		{"raw-kdump", "oom/vmcore.lzo", CompressionNone},
		{"flat-lzo", "oom/vmcore.flat", CompressionLZO},
	} {
		d := openFixture(b, c.file)
		// More pages than the cache holds, so "cold" really decompresses.
		pfns := pagesOf(d, c.enc, 2*DefaultCachePages)
		b.Run(c.name+"/cold", func(b *testing.B) { benchRead(b, d, pfns, false) })
		b.Run(c.name+"/warm", func(b *testing.B) { benchRead(b, d, pfns, true) })
		if c.enc != CompressionNone {
			b.Run(c.name+"/decompressor-only", func(b *testing.B) { benchDecompressor(b, d, pfns) })
		}
	}
	elf := openFixture(b, "oom/vmcore.elf")
	var pfns []uint64
	for _, g := range elf.elf.phys {
		for a := g.PAddr; a+4096 <= g.PAddr+g.FileSz && len(pfns) < 2*DefaultCachePages; a += 4096 {
			pfns = append(pfns, a/4096)
		}
	}
	b.Run("elf/cold", func(b *testing.B) { benchRead(b, elf, pfns, false) })
	b.Run("elf/warm", func(b *testing.B) { benchRead(b, elf, pfns, true) })

	// Snappy and zstd: Debian's makedumpfile cannot write them, so the
	// pages are the real lzo dump's pages re-encoded by the test writer.
	lzo := openFixture(b, "oom/vmcore.lzo")
	real := pagesOf(lzo, CompressionLZO, 512)
	for _, enc := range []Compression{CompressionSnappy, CompressionZstd} {
		exists, pages := map[uint64]bool{}, map[uint64][]byte{}
		for i, pfn := range real {
			pg := make([]byte, 4096)
			lzo.ReadPhys(pg, pfn*4096)
			exists[uint64(i)], pages[uint64(i)] = true, pg
		}
		s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: uint64(len(real)), exists: exists, pages: pages, enc: enc}
		d, err := OpenBytes(enc.String(), s.bytes())
		if err != nil {
			b.Fatal(err)
		}
		d.cache = newPageCache(64*4096, 4096) // smaller than the page set: cold reads decode
		ps := pagesOf(d, enc, len(real))
		b.Run(enc.String()+"/cold", func(b *testing.B) { benchRead(b, d, ps, false) })
		b.Run(enc.String()+"/decompressor-only", func(b *testing.B) { benchDecompressor(b, d, ps) })
	}
}

// benchDecompressor runs only the decompressor over the stored bytes.
func benchDecompressor(b *testing.B, d *Dump, pfns []uint64) {
	type stored struct {
		c   Compression
		src []byte
	}
	var ss []stored
	for _, pfn := range pfns {
		k := d.partFor(pfn)
		pd, _, err := k.descriptor(pfn)
		if err != nil {
			b.Fatal(err)
		}
		src := make([]byte, pd.Size)
		k.src.ReadAt(src, pd.Offset)
		c, _ := compressionOf(pd.Flags)
		ss = append(ss, stored{c, src})
	}
	dst := make([]byte, 4096)
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := ss[i%len(ss)]
		if err := decompressPage(s.c, s.src, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTranslate(b *testing.B) {
	d := openFixture(b, "oom/vmcore.lzo")
	k, err := d.Kernel()
	if err != nil {
		b.Fatal(err)
	}
	// Addresses the walker must resolve: vmalloc'd task stacks are typical,
	// but any mapped page of the direct map walks the same four levels.
	var vas []uint64
	base, _ := openFixture(b, "oom/vmcore.elf").Kernel()
	db, _ := base.DirectMap()
	r := rand.New(rand.NewSource(1))
	for len(vas) < 4096 {
		pfn := uint64(r.Int63n(int64(d.MaxPFN())))
		if _, err := d.ReadPhys(make([]byte, 1), pfn*4096); err == nil {
			vas = append(vas, db+pfn*4096)
		}
	}
	b.Run("walk-cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			d.cache = newPageCache(DefaultCacheBytes, 4096)
			k.PageTable = mustPT(b, d, k.PageTable)
			b.StartTimer()
			if _, err := k.PageTable.Walk(vas[i%len(vas)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("walk-warm-page-cache", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := k.PageTable.Walk(vas[i%len(vas)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("translation-cache-hit", func(b *testing.B) {
		k.PageTable.Translate(vas[0])
		for i := 0; i < b.N; i++ {
			if _, err := k.PageTable.Translate(vas[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func mustPT(b *testing.B, d *Dump, old *PageTable) *PageTable {
	pt, err := NewPageTable(d, old.root, old.levels, pteAddrMask&^old.addrMask)
	if err != nil {
		b.Fatal(err)
	}
	return pt
}

func BenchmarkOpenSparse(b *testing.B) {
	for _, ram := range []struct {
		name  string
		bytes uint64
	}{{"1GiB", 1 << 30}, {"64GiB", 64 << 30}, {"1TiB", 1 << 40}} {
		path := filepath.Join(b.TempDir(), "sparse.kdump")
		if err := synthdump.WriteSparseKdump(path, ram.bytes); err != nil {
			b.Fatal(err)
		}
		b.Run(ram.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				d, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.ReadPhys(make([]byte, 8), 0); err != nil {
					b.Fatal(err)
				}
				d.Close()
			}
		})
	}
}

func TestSparseKdump(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse.kdump")
	if err := synthdump.WriteSparseKdump(path, 1<<40); err != nil {
		t.Fatal(err)
	}
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 4096)
	last := (uint64(1)<<40)/4096 - 1
	for i, pfn := range []uint64{0, 1, last/2 + 0, last} {
		_ = i
		if pfn == last/2 {
			pfn = (last + 1) / 2
		}
		if _, err := d.ReadPhys(buf, pfn*4096); err != nil {
			t.Fatalf("pfn 0x%x: %v", pfn, err)
		}
	}
	if _, err := d.ReadPhys(buf, 7*4096); err == nil {
		t.Fatal("a page that is not in the sparse dump read")
	}
}
