package vmcore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
)

const testVMCOREINFO = "OSRELEASE=6.1.0-synthetic\nPAGESIZE=4096\nKERNELOFFSET=1c400000\nNUMBER(phys_base)=-2147483648\nSYMBOL(init_top_pgt)=ffffffff9e40a000\nNUMBER(pgtable_l5_enabled)=0\nCRASHTIME=1790000000\nSOMETHING(new)=42\n"

// testPages makes a mix of pages: compressible text, random bytes (stored
// raw because they do not shrink) and zero pages.
func testPages(r *rand.Rand, maxMapnr uint64) (exists map[uint64]bool, pages map[uint64][]byte) {
	exists, pages = map[uint64]bool{}, map[uint64][]byte{}
	for p := uint64(0); p < maxMapnr; p++ {
		switch {
		case p%17 == 5: // hole
			continue
		case p%11 == 3: // excluded
			exists[p] = true
			continue
		}
		exists[p] = true
		pg := make([]byte, 4096)
		switch p % 3 {
		case 0:
			copy(pg, bytes.Repeat([]byte(fmt.Sprintf("page %d says hello; ", p)), 300))
		case 1:
			r.Read(pg)
		case 2: // zero page
		}
		pages[p] = pg
	}
	return
}

func checkPages(t *testing.T, d *Dump, exists map[uint64]bool, pages map[uint64][]byte, maxMapnr uint64) {
	t.Helper()
	buf := make([]byte, 4096)
	for p := uint64(0); p < maxMapnr+2; p++ {
		_, err := d.ReadPhys(buf, p*4096)
		switch {
		case pages[p] != nil:
			if err != nil {
				t.Fatalf("pfn %d: %v", p, err)
			}
			if !bytes.Equal(buf, pages[p]) {
				t.Fatalf("pfn %d: bytes differ", p)
			}
		case exists[p]:
			if !errors.Is(err, ErrExcluded) {
				t.Fatalf("pfn %d: want ErrExcluded, got %v", p, err)
			}
		default:
			if !errors.Is(err, ErrNotPresent) {
				t.Fatalf("pfn %d: want ErrNotPresent, got %v", p, err)
			}
		}
	}
	// A read that straddles pages and starts mid-page.
	for p := uint64(0); p+1 < maxMapnr; p++ {
		if pages[p] != nil && pages[p+1] != nil {
			got := make([]byte, 100)
			if _, err := d.ReadPhys(got, p*4096+4046); err != nil {
				t.Fatal(err)
			}
			want := append(append([]byte{}, pages[p][4046:]...), pages[p+1][:50]...)
			if !bytes.Equal(got, want) {
				t.Fatalf("straddling read at pfn %d differs", p)
			}
			break
		}
	}
}

func TestSyntheticKdump(t *testing.T) {
	const maxMapnr = 200
	r := rand.New(rand.NewSource(1))
	exists, pages := testPages(r, maxMapnr)
	for _, enc := range []Compression{CompressionNone, CompressionZlib, CompressionSnappy, CompressionZstd} {
		for version := int32(1); version <= 6; version++ {
			for _, shareZero := range []bool{false, true} {
				name := fmt.Sprintf("%v/v%d/sharezero=%v", enc, version, shareZero)
				t.Run(name, func(t *testing.T) {
					s := &synthKdump{version: version, pageSize: 4096, maxMapnr: maxMapnr, exists: exists, pages: pages,
						enc: enc, dumpLevel: 31, vmcoreinfo: testVMCOREINFO, shareZero: shareZero,
						notes: append(prstatusNote(0, 0xffffffff81000000, 0x1000), prstatusNote(1234, 0xffffffff81000010, 0x2000)...)}
					img := s.bytes()
					d, err := OpenBytes("synth.kdump", img)
					if err != nil {
						t.Fatal(err)
					}
					if d.Format() != FormatKdump {
						t.Fatalf("format %v", d.Format())
					}
					checkPages(t, d, exists, pages, maxMapnr)
					pc := d.PageCounts()
					if pc.Dumped != uint64(len(pages)) || pc.Excluded != uint64(len(exists)-len(pages)) {
						t.Errorf("page counts %+v, want %d dumped %d excluded", pc, len(pages), len(exists)-len(pages))
					}
					vi, err := d.VMCOREINFO()
					if version >= 3 {
						if err != nil || vi.OSRelease != "6.1.0-synthetic" || vi.KernelOffset != 0x1c400000 {
							t.Fatalf("VMCOREINFO %+v %v", vi, err)
						}
					} else if err == nil {
						t.Fatalf("v%d header has no VMCOREINFO field, yet one was found", version)
					}
					if version >= 4 {
						ps := d.PRStatus()
						if len(ps) != 2 || ps[1].PID != 1234 || ps[1].Regs.Value(amd64.RIP) != 0xffffffff81000010 || ps[1].Regs.Value(amd64.RSP) != 0x2000 {
							t.Fatalf("prstatus %+v", ps)
						}
					}
					m, err := d.Compressions()
					if err != nil {
						t.Fatal(err)
					}
					if enc != CompressionNone && m[enc] == 0 {
						t.Errorf("no %v pages seen: %v", enc, m)
					}
					if m[CompressionNone] == 0 {
						t.Errorf("random pages should be stored raw: %v", m)
					}
				})
			}
		}
	}
}

func TestSyntheticOneBitmap(t *testing.T) {
	const maxMapnr = 100
	exists, pages := testPages(rand.New(rand.NewSource(2)), maxMapnr)
	s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: maxMapnr, exists: exists, pages: pages, enc: CompressionZlib, oneBitmap: true}
	d, err := OpenBytes("old.kdump", s.bytes())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for p := uint64(0); p < maxMapnr; p++ {
		_, err := d.ReadPhys(buf, p*4096)
		if pages[p] != nil {
			if err != nil || !bytes.Equal(buf, pages[p]) {
				t.Fatalf("pfn %d: %v", p, err)
			}
		} else if !errors.Is(err, ErrExcluded) {
			// One bitmap cannot tell a hole from an excluded page.
			t.Fatalf("pfn %d: %v", p, err)
		}
	}
}

func TestSyntheticFlattened(t *testing.T) {
	const maxMapnr = 150
	exists, pages := testPages(rand.New(rand.NewSource(3)), maxMapnr)
	s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: maxMapnr, exists: exists, pages: pages, enc: CompressionSnappy, vmcoreinfo: testVMCOREINFO, dumpLevel: 31}
	img := s.bytes()
	for _, chunk := range []int{333, 4096, 1 << 20} {
		flat := flatten(img, chunk, int64(chunk))
		d, err := OpenBytes("synth.flat", flat)
		if err != nil {
			t.Fatal(err)
		}
		if d.Format() != FormatKdumpFlattened || d.Incomplete() {
			t.Fatalf("format %v incomplete %v", d.Format(), d.Incomplete())
		}
		checkPages(t, d, exists, pages, maxMapnr)
		// The flattened view must equal the image byte for byte.
		fs := d.parts[0].src
		got := make([]byte, len(img))
		if n, _ := fs.ReadAt(got, 0); n != len(img) || !bytes.Equal(got, img) {
			t.Fatalf("chunk %d: rearranged bytes differ (n=%d)", chunk, n)
		}
	}
	// A stream cut short still opens and says so.
	flat := flatten(img, 4096, 0)
	cut := flat[:len(flat)*2/3]
	d, err := OpenBytes("cut.flat", cut)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Incomplete() {
		t.Fatal("a truncated flattened stream should be incomplete")
	}
}

func TestSyntheticSplit(t *testing.T) {
	const maxMapnr = 300
	exists, pages := testPages(rand.New(rand.NewSource(4)), maxMapnr)
	var srcs []source
	for _, r := range [][2]uint64{{130, 300}, {0, 130}} { // out of order on purpose
		s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: maxMapnr, exists: exists, pages: pages, enc: CompressionZstd,
			vmcoreinfo: testVMCOREINFO, split: true, start: r[0], end: r[1], dumpLevel: 31}
		srcs = append(srcs, &bytesSource{name: fmt.Sprintf("split.%d", r[0]), data: s.bytes()})
	}
	d, err := openSources(srcs)
	if err != nil {
		t.Fatal(err)
	}
	d.files = []string{"a", "b"}
	checkPages(t, d, exists, pages, maxMapnr)
	if pc := d.PageCounts(); pc.Dumped != uint64(len(pages)) {
		t.Fatalf("split dumped %d, want %d", pc.Dumped, len(pages))
	}
	// One part alone serves its range and says the rest is elsewhere.
	d1, err := openSources(srcs[1:])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d1.ReadPhys(make([]byte, 8), 200*4096); err == nil {
		t.Fatal("pfn 200 is not in the first part")
	}
}

func TestSyntheticIncompleteAndCorrupt(t *testing.T) {
	const maxMapnr = 64
	exists, pages := testPages(rand.New(rand.NewSource(5)), maxMapnr)
	s := &synthKdump{version: 6, pageSize: 4096, maxMapnr: maxMapnr, exists: exists, pages: pages, enc: CompressionZlib, vmcoreinfo: testVMCOREINFO}
	img := s.bytes()
	d, err := OpenBytes("full", img)
	if err != nil {
		t.Fatal(err)
	}
	// Find the last dumped pfn's data and cut the file in the middle of it.
	var last uint64
	for p := range pages {
		last = max(last, p)
	}
	pd, _, err := d.parts[0].descriptor(last)
	if err != nil {
		t.Fatal(err)
	}
	cut := append([]byte(nil), img[:pd.Offset+int64(pd.Size)/2]...)
	cut[424] |= DUMP_DH_COMPRESSED_INCOMPLETE
	dc, err := OpenBytes("cut", cut)
	if err != nil {
		t.Fatal(err)
	}
	if !dc.Incomplete() {
		t.Fatal("not reported incomplete")
	}
	if _, err := dc.ReadPhys(make([]byte, 4096), last*4096); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("cut page: %v", err)
	}
	for p := range pages {
		if p < last/2 {
			if _, err := dc.ReadPhys(make([]byte, 4096), p*4096); err != nil {
				t.Fatalf("pfn %d before the cut: %v", p, err)
			}
		}
	}
	// Garbage over one compressed page: that page is corrupt, others read.
	var victim uint64
	found := false
	for p := uint64(0); p < maxMapnr && !found; p++ {
		if c, err := d.PageEncoding(p); err == nil && c == CompressionZlib {
			victim, found = p, true
		}
	}
	if !found {
		t.Fatal("no zlib page")
	}
	pd, _, _ = d.parts[0].descriptor(victim)
	bad := append([]byte(nil), img...)
	for i := int64(0); i < int64(pd.Size); i++ {
		bad[pd.Offset+i] = byte(i * 7)
	}
	db, err := OpenBytes("bad", bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.ReadPhys(make([]byte, 4096), victim*4096)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("garbage page: %v", err)
	}
	var pe *PhysError
	if !errors.As(err, &pe) || pe.Offset != pd.Offset || pe.Addr != victim*4096 {
		t.Fatalf("error does not name the page: %v", err)
	}
	checkPagesExcept(t, db, pages, victim)
}

func checkPagesExcept(t *testing.T, d *Dump, pages map[uint64][]byte, skip uint64) {
	buf := make([]byte, 4096)
	for p, want := range pages {
		if p == skip {
			continue
		}
		if _, err := d.ReadPhys(buf, p*4096); err != nil || !bytes.Equal(buf, want) {
			t.Fatalf("pfn %d: %v", p, err)
		}
	}
}

func TestSyntheticELF(t *testing.T) {
	mem := func(a uint64) byte { return byte(a*31 + a>>12) }
	notes := append(prstatusNote(0, 1, 2), elfNote("VMCOREINFO", 0, []byte(testVMCOREINFO))...)
	segs := []synthSeg{
		{vaddr: 0xffffffff9c400000, paddr: 0x100000, filesz: 0x2000, memsz: 0x2000}, // kernel text, duplicate of RAM
		{vaddr: 0xffff9a0000100000, paddr: 0x100000, filesz: 0x8000, memsz: 0x8000},
		{vaddr: 0xffff9a0000200000, paddr: 0x200000, filesz: 0x1000, memsz: 0x3000}, // zero tail
	}
	img := synthELF(notes, segs, mem, 0)
	d, err := OpenBytes("synth.elf", img)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0x3000)
	if _, err := d.ReadPhys(buf[:0x8000%0x3000], 0x100000); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0x8000)
	if _, err := d.ReadPhys(got, 0x100000); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if b != mem(0x100000+uint64(i)) {
			t.Fatalf("byte 0x%x differs", i)
		}
	}
	if _, err := d.ReadPhys(buf, 0x200000); err != nil {
		t.Fatal(err)
	}
	if buf[0x1000] != 0 || buf[0x2fff] != 0 || buf[0] != mem(0x200000) {
		t.Fatal("p_memsz > p_filesz tail must read zeros")
	}
	if _, err := d.ReadPhys(buf[:8], 0x300000); !errors.Is(err, ErrNotPresent) {
		t.Fatalf("outside: %v", err)
	}
	if d.Incomplete() {
		t.Fatal("complete ELF reported incomplete")
	}
	// Truncated: opens, says so, reads what exists.
	dt, err := OpenBytes("cut.elf", img[:len(img)-0x800])
	if err != nil {
		t.Fatal(err)
	}
	if !dt.Incomplete() {
		t.Fatal("truncated ELF not incomplete")
	}
	if _, err := dt.ReadPhys(buf[:16], 0x200000+0x1000-0x10); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("past the end: %v", err)
	}
	if _, err := dt.ReadPhys(buf[:16], 0x100000); err != nil {
		t.Fatal(err)
	}
}

func TestNotFormats(t *testing.T) {
	for _, c := range []struct{ name, data string }{
		{"empty", ""},
		{"text", "hello, this is not a dump at all"},
		{"short-kdump", "KDUMP   \x06\x00"},
		{"short-elf", "\x7fELF\x02\x01"},
		{"flat-bad-type", "makedumpfile\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07"},
	} {
		_, err := OpenBytes(c.name, []byte(c.data))
		if err == nil {
			t.Errorf("%s: opened", c.name)
			continue
		}
		if !errors.Is(err, ErrFormat) || !bytes.Contains([]byte(err.Error()), []byte(c.name)) {
			t.Errorf("%s: error %q should name the file and wrap ErrFormat", c.name, err)
		}
	}
}

func TestParseVMCOREINFO(t *testing.T) {
	v, err := ParseVMCOREINFO([]byte(testVMCOREINFO + "\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"osrelease", v.OSRelease, "6.1.0-synthetic"},
		{"pagesize", v.PageSize, uint64(4096)},
		{"kaslr", v.KernelOffset, uint64(0x1c400000)},
		{"phys_base", int64(v.PhysBase), int64(-2147483648)},
		{"root", v.Symbols["init_top_pgt"], uint64(0xffffffff9e40a000)},
		{"l5", v.PgtableL5, false},
		{"haveL5", v.HasPgtableL5, true},
		{"crashtime", v.CrashTime, int64(1790000000)},
		{"unknown", v.Values["SOMETHING(new)"], "42"},
		{"keys", len(v.Keys), 8},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v want %v", c.name, c.got, c.want)
		}
	}
	if _, err := ParseVMCOREINFO([]byte("PAGESIZE=4095\n")); err == nil {
		t.Error("a page size that is not a power of two was accepted")
	}
	if _, err := ParseVMCOREINFO([]byte("OSRELEASE=x\nSYMBOL(x)=zz\n")); err == nil || !bytes.Contains([]byte(err.Error()), []byte("offset 12")) {
		t.Errorf("bad symbol: %v", err)
	}
}
