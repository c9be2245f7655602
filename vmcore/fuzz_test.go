package vmcore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fuzz targets for every parser in the package. Seeds are in
// testdata/fuzz/<target>; VMCORE_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus
// regenerates them from the synthetic writer.

func smallKdump(enc Compression, version int32) []byte {
	exists, pages := testPages(rand.New(rand.NewSource(int64(enc)+int64(version))), 6)
	s := &synthKdump{version: version, pageSize: 4096, maxMapnr: 6, exists: exists, pages: pages, enc: enc,
		vmcoreinfo: testVMCOREINFO, notes: prstatusNote(7, 1, 2), dumpLevel: 31, shareZero: true}
	return s.bytes()
}

func smallELF() []byte {
	notes := append(prstatusNote(0, 1, 2), elfNote("VMCOREINFO", 0, []byte(testVMCOREINFO))...)
	return synthELF(notes, []synthSeg{{vaddr: 0xffff888000000000, paddr: 0, filesz: 0x2000, memsz: 0x3000}}, func(a uint64) byte { return byte(a) }, 0)
}

func FuzzOpen(f *testing.F) {
	f.Add(smallKdump(CompressionZlib, 6))
	f.Add(smallKdump(CompressionSnappy, 3))
	f.Add(smallELF())
	f.Add(flatten(smallKdump(CompressionZstd, 6), 1000, 1))
	for _, r := range hostileSeeds() {
		f.Add(r.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d *Dump
		var err error
		// Nothing a header says may make an open allocate more than a
		// small multiple of the input.
		if n := allocated(func() { d, err = OpenBytes("fuzz", data) }); n > allocBound(len(data)) {
			t.Fatalf("opening %d bytes allocated %d", len(data), n)
		}
		if err != nil {
			if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Fatalf("error %q is not one line naming the file", err)
			}
			return
		}
		d.PageCounts()
		d.Compressions()
		d.Incomplete()
		buf := make([]byte, 64)
		for _, a := range []uint64{0, 4096, 8190, 1 << 20, 0xfffffffffffff000} {
			d.ReadPhys(buf, a)
		}
		if k, err := d.Kernel(); err == nil {
			k.Read(buf, 0xffffffff81000000)
			k.Read(buf, 0xffff888000001000)
		}
	})
}

func FuzzVMCOREINFO(f *testing.F) {
	f.Add([]byte(testVMCOREINFO))
	f.Add([]byte("NUMBER(x)=0x10\nOFFSET(a.b)=8\nSIZE(c)=16\nLENGTH(d)=4\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVMCOREINFO(data)
		if err == nil && v.PageSize != 0 && v.PageSize&(v.PageSize-1) != 0 {
			t.Fatalf("accepted page size %d", v.PageSize)
		}
	})
}

func FuzzNotes(f *testing.F) {
	f.Add(append(prstatusNote(1, 2, 3), elfNote("VMCOREINFO", 0, []byte("OSRELEASE=x\n"))...))
	f.Add(elfNote("QEMU", 0, make([]byte, qemuCPUStateSize)))
	f.Fuzz(func(t *testing.T, data []byte) {
		notes, _ := ParseNotes("fuzz", data, 0)
		for _, n := range notes {
			if len(n.Desc) > len(data) {
				t.Fatal("note larger than its area")
			}
		}
		classifyNotes("fuzz", notes)
	})
}

func FuzzFlattened(f *testing.F) {
	f.Add(flatten([]byte("KDUMP   some bytes of a file"), 5, 1))
	f.Add(flatten(make([]byte, 10000), 777, 2))
	f.Add(hugeFlatKdump(4096, 1<<27, 1<<40, 1<<40))
	f.Add(flatRecords(flatRec{10, []byte("abcdef")}, flatRec{0, []byte("0123456789ABCDEF")}, flatRec{4, []byte("xy")}, flatRec{12, nil}, flatRec{14, []byte("zzzz")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fs *flatSource
		var err error
		if n := allocated(func() { fs, err = openFlattened(&bytesSource{name: "fuzz", data: data}) }); n > allocBound(len(data)) {
			t.Fatalf("indexing %d bytes allocated %d", len(data), n)
		}
		if err != nil {
			return
		}
		if fs.stored() > int64(len(data)) {
			t.Fatalf("records hold %d bytes of a %d-byte stream", fs.stored(), len(data))
		}
		// Small streams: the index must read as the records applied in
		// order onto zeros, the last writer winning.
		if fs.Size() <= 1<<20 {
			want := applyFlatRecords(data, fs.Size())
			got := make([]byte, fs.Size())
			if n, err := fs.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt: %d, %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("rearranged bytes differ from the records applied in order")
			}
		}
		var prev int64 = -1
		for _, e := range fs.extents {
			if e.off < prev || e.size <= 0 {
				t.Fatalf("extents not sorted and disjoint: %+v", fs.extents)
			}
			prev = e.off + e.size
		}
		buf := make([]byte, 300)
		for _, off := range []int64{0, 1, 4095, fs.Size() - 1} {
			fs.ReadAt(buf, off)
		}
	})
}

// applyFlatRecords is the flattened format's meaning, written plainly:
// each record copied to its offset in stream order.
func applyFlatRecords(data []byte, size int64) []byte {
	out := make([]byte, size)
	be := binary.BigEndian
	for pos := MAX_SIZE_MDF_HEADER; pos+flatRecordHeaderSize <= len(data); {
		off, n := int64(be.Uint64(data[pos:])), int64(be.Uint64(data[pos+8:]))
		if off == END_FLAG_FLAT_HEADER {
			break
		}
		pos += flatRecordHeaderSize
		n = min(n, int64(len(data)-pos))
		if off+n <= size {
			copy(out[off:], data[pos:pos+int(n)])
		}
		pos += int(n)
	}
	return out
}

func FuzzDecompress(f *testing.F) {
	page := make([]byte, 4096)
	copy(page, "a page of text that compresses well well well well well")
	for _, c := range []Compression{CompressionZlib, CompressionSnappy, CompressionZstd} {
		f.Add(uint8(c), compressPage(c, page))
	}
	f.Add(uint8(CompressionLZO), []byte{0x11, 0, 0})
	f.Fuzz(func(t *testing.T, method uint8, src []byte) {
		dst := make([]byte, 4096)
		decompressPage(Compression(method), src, dst)
	})
}

func FuzzPageTableWalk(f *testing.F) {
	f.Add(make([]byte, 8192), uint64(0xffffffff81000000), true)
	seed := make([]byte, 4096*3)
	binary.LittleEndian.PutUint64(seed[511*8:], 0x1000|1)
	binary.LittleEndian.PutUint64(seed[4096+510*8:], 0x2000|1|0x80)
	f.Add(seed, uint64(0xffffffff80000000), false)
	f.Fuzz(func(t *testing.T, mem []byte, va uint64, five bool) {
		m := physPages{}
		for i := 0; i+4096 <= len(mem) && i < 64*4096; i += 4096 {
			m[uint64(i)] = mem[i : i+4096]
		}
		levels := 4
		if five {
			levels = 5
		}
		pt, _ := NewPageTable(m, 0, levels, 0)
		pt.Translate(va)
		pt.Read(make([]byte, 100), va)
	})
}

// TestWriteFuzzCorpus refreshes the committed seed corpora.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("VMCORE_WRITE_CORPUS") == "" {
		t.Skip("set VMCORE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target, name string, vals ...any) {
		dir := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(dir, 0o755)
		s := "go test fuzz v1\n"
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				s += fmt.Sprintf("[]byte(%q)\n", v)
			case uint8:
				s += fmt.Sprintf("byte(%q)\n", v)
			case uint64:
				s += fmt.Sprintf("uint64(%d)\n", v)
			case bool:
				s += fmt.Sprintf("bool(%v)\n", v)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []Compression{CompressionNone, CompressionZlib, CompressionSnappy, CompressionZstd} {
		for _, v := range []int32{1, 4, 6} {
			write("FuzzOpen", fmt.Sprintf("kdump-%v-v%d", c, v), smallKdump(c, v))
		}
	}
	write("FuzzOpen", "elf", smallELF())
	write("FuzzOpen", "flat", flatten(smallKdump(CompressionZlib, 6), 999, 3))
	for _, r := range hostileSeeds() {
		write("FuzzOpen", r.name, r.data)
	}
	write("FuzzFlattened", "huge-offset", hugeFlatKdump(4096, 1<<27, 1<<40, 1<<40))
	write("FuzzFlattened", "overlaps", flatRecords(flatRec{10, []byte("abcdef")}, flatRec{0, []byte("0123456789ABCDEF")}, flatRec{4, []byte("xy")}, flatRec{12, nil}, flatRec{14, []byte("zzzz")}))
	write("FuzzVMCOREINFO", "typical", []byte(testVMCOREINFO))
	write("FuzzNotes", "prstatus", prstatusNote(5, 6, 7))
	write("FuzzFlattened", "records", flatten([]byte("abcdefghijklmnopqrstuvwxyz"), 3, 4))
	page := make([]byte, 4096)
	copy(page, "zero-padded page")
	for _, c := range []Compression{CompressionZlib, CompressionSnappy, CompressionZstd} {
		write("FuzzDecompress", c.String(), uint8(c), compressPage(c, page))
	}
	mem := make([]byte, 4096*4)
	binary.LittleEndian.PutUint64(mem[511*8:], 0x1000|1)
	binary.LittleEndian.PutUint64(mem[4096+510*8:], 0x2000|1)
	binary.LittleEndian.PutUint64(mem[8192+8*8:], 0x3000|1|0x80)
	write("FuzzPageTableWalk", "kernel-2m", mem, uint64(0xffffffff81000000), false)
}

type namedSeed struct {
	name string
	data []byte
}

// hostileSeeds are the reproducers of the reported defects, as inputs of
// FuzzOpen.
func hostileSeeds() []namedSeed {
	le := binary.LittleEndian
	patch := func(img []byte, off int, v uint64, width int) []byte {
		img = append([]byte(nil), img...)
		if width == 8 {
			le.PutUint64(img[off:], v)
		} else {
			le.PutUint32(img[off:], uint32(v))
		}
		return img
	}
	k := smallKdump(CompressionZlib, 6)
	return []namedSeed{
		{"flat-kdump-2pow40", hugeFlatKdump(4096, 1<<27, 1<<40, 1<<40)},
		{"flat-kdump-2pow62", hugeFlatKdump(4096, math.MaxUint32, 1<<40, 1<<62)},
		{"flat-kdump-1MiB-blocks", hugeFlatKdump(1<<20, math.MaxUint32, 1<<32, 1<<62)},
		{"flat-elf-pn_xnum", hugeFlatELF(1 << 40)},
		{"kdump-max_mapnr-2pow64-1", patch(k, 4096+96, math.MaxUint64, 8)},
		{"kdump-max_mapnr-past-bitmaps", patch(k, 4096+96, 32769, 8)},
		{"kdump-block_size-1MiB", patch(k, 428, 1<<20, 4)},
	}
}
