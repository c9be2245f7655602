package symbols

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// flatMem is memory starting at base.
type flatMem struct {
	base uint64
	data []byte
}

func (m flatMem) Read(p []byte, addr uint64) error {
	if addr < m.base || addr-m.base+uint64(len(p)) > uint64(len(m.data)) {
		return errors.New("out of range")
	}
	copy(p, m.data[addr-m.base:])
	return nil
}

// buildKallsyms lays out a kernel-style table: one token per byte value,
// names as raw characters, offsets in the absolute-percpu encoding.
func buildKallsyms(names []string, addrs []uint64, relBase uint64) (flatMem, map[string]uint64) {
	const base = 0xffffffff82000000
	le := binary.LittleEndian
	data := make([]byte, 0x10000)
	sym := map[string]uint64{}
	at := func(name string, off int) uint64 { sym[name] = base + uint64(off); return base + uint64(off) }
	// token table and index
	tt := at("kallsyms_token_table", 0x100)
	ti := at("kallsyms_token_index", 0x800)
	for i := 0; i < 256; i++ {
		data[tt-base+uint64(2*i)] = byte(i)
		le.PutUint16(data[ti-base+uint64(2*i):], uint16(2*i))
	}
	at("kallsyms_num_syms", 0xa00)
	le.PutUint32(data[0xa00:], uint32(len(names)))
	at("kallsyms_relative_base", 0xa08)
	le.PutUint64(data[0xa08:], relBase)
	at("kallsyms_offsets", 0xb00)
	off := 0x2000
	at("kallsyms_names", off)
	for i, n := range names {
		data[off] = byte(len(n))
		copy(data[off+1:], n)
		off += 1 + len(n)
		var o int32
		if addrs[i] < 1<<31 {
			o = int32(addrs[i])
		} else {
			o = int32(-int64(addrs[i]-relBase) - 1)
		}
		le.PutUint32(data[0xb00+4*i:], uint32(o))
	}
	return flatMem{base, data}, sym
}

func TestKallsyms(t *testing.T) {
	rel := uint64(0xffffffff9c000000)
	names := []string{"T_stext", "Tstart_kernel", "Dcurrent_task", "tlocal_fn"}
	addrs := []uint64{rel + 0x1000, rel + 0x2345, 0x1fb80, rel + 0x3000}
	m, vi := buildKallsyms(names, addrs, rel)
	vi["_stext"] = rel + 0x1000
	k, err := LoadKallsyms(m, vi)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		a, err := k.Address(n[1:])
		if err != nil || a != addrs[i] {
			t.Errorf("%s: 0x%x %v, want 0x%x", n, a, err, addrs[i])
		}
	}
	if name, off, ok := k.Lookup(rel + 0x2350); !ok || name != "start_kernel" || off != 0xb {
		t.Errorf("lookup: %s+0x%x %v", name, off, ok)
	}
	// A wrong _stext means no encoding fits: refused, not guessed.
	vi["_stext"] = rel + 0x999
	if _, err := LoadKallsyms(m, vi); err == nil {
		t.Error("kallsyms accepted with a _stext it cannot reproduce")
	}
	delete(vi, "kallsyms_names")
	if _, err := LoadKallsyms(m, vi); !errors.Is(err, ErrNoKallsyms) {
		t.Errorf("missing symbols: %v", err)
	}
}

func FuzzKallsyms(f *testing.F) {
	rel := uint64(0xffffffff9c000000)
	m, _ := buildKallsyms([]string{"T_stext", "Tfoo"}, []uint64{rel + 0x1000, rel + 0x2000}, rel)
	f.Add(m.data[:0x2100])
	long, _ := longNameKallsyms()
	f.Add(long.data[:0x2100])
	f.Fuzz(func(t *testing.T, data []byte) {
		const base = 0xffffffff82000000
		vi := map[string]uint64{"kallsyms_token_table": base + 0x100, "kallsyms_token_index": base + 0x800,
			"kallsyms_num_syms": base + 0xa00, "kallsyms_relative_base": base + 0xa08, "kallsyms_offsets": base + 0xb00,
			"kallsyms_names": base + 0x2000, "_stext": rel + 0x1000}
		// num_syms alone may size tables (8 * 2^22 bytes); names are
		// bounded apart from it (KSYM_NAME_LEN, 64 MiB in all).
		if n := allocated(func() { LoadKallsyms(flatMem{base, data}, vi) }); n > 256<<20 {
			t.Fatalf("loading from %d bytes allocated %d", len(data), n)
		}
	})
}

func TestWriteKallsymsCorpus(t *testing.T) {
	if os.Getenv("VMCORE_WRITE_CORPUS") == "" {
		t.Skip("set VMCORE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	rel := uint64(0xffffffff9c000000)
	m, _ := buildKallsyms([]string{"T_stext", "Tfoo", "dbar"}, []uint64{rel + 0x1000, rel + 0x2000, 0x100}, rel)
	dir := filepath.Join("testdata", "fuzz", "FuzzKallsyms")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "table"), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", m.data[:0x2020])), 0o644); err != nil {
		t.Fatal(err)
	}
	long, _ := longNameKallsyms()
	if err := os.WriteFile(filepath.Join(dir, "long-names"), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", long.data[:0x2100])), 0o644); err != nil {
		t.Fatal(err)
	}
}
