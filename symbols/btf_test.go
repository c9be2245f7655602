package symbols

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// btfBuilder writes raw BTF for tests.
type btfBuilder struct {
	types []byte
	strs  []byte
	n     uint32
}

func (b *btfBuilder) str(s string) uint32 {
	if s == "" {
		return 0
	}
	off := uint32(len(b.strs))
	b.strs = append(append(b.strs, s...), 0)
	return off
}

func (b *btfBuilder) typ(name string, kind uint8, kflag bool, vlen int, sizeOrType uint32, extra ...uint32) uint32 {
	info := uint32(kind)<<24 | uint32(vlen)
	if kflag {
		info |= 1 << 31
	}
	le := binary.LittleEndian
	b.types = le.AppendUint32(b.types, b.str(name))
	b.types = le.AppendUint32(b.types, info)
	b.types = le.AppendUint32(b.types, sizeOrType)
	for _, e := range extra {
		b.types = le.AppendUint32(b.types, e)
	}
	b.n++
	return b.n
}

func (b *btfBuilder) bytes() []byte {
	le := binary.LittleEndian
	h := make([]byte, btfHeaderSize)
	le.PutUint16(h, btfMagic)
	h[2] = 1
	le.PutUint32(h[4:], btfHeaderSize)
	le.PutUint32(h[8:], 0)
	le.PutUint32(h[12:], uint32(len(b.types)))
	le.PutUint32(h[16:], uint32(len(b.types)))
	le.PutUint32(h[20:], uint32(len(b.strs)))
	return append(append(h, b.types...), b.strs...)
}

func sampleBTF() []byte {
	b := &btfBuilder{strs: []byte{0}}
	long := b.typ("long unsigned int", BTF_KIND_INT, false, 0, 8, 64) // 1
	ptr := b.typ("", BTF_KIND_PTR, false, 0, 0)                       // 2 void *
	thread := b.typ("thread_struct", BTF_KIND_STRUCT, false, 2, 16,   // 3
		b.str("es"), long, 0, b.str("sp"), long, 64)
	inner := b.typ("", BTF_KIND_STRUCT, false, 1, 8, b.str("stack"), ptr, 0) // 4 anonymous
	td := b.typ("thread_t", BTF_KIND_TYPEDEF, false, 0, thread)              // 5
	b.typ("task_struct", BTF_KIND_STRUCT, true, 3, 64,                       // 6
		b.str("flags"), long, 3<<24|0, b.str(""), inner, 64, b.str("thread"), td, 256)
	return b.bytes()
}

func TestBTFOffsets(t *testing.T) {
	b, err := ParseBTF(sampleBTF())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want uint64
	}{{"flags", 0}, {"stack", 8}, {"thread", 32}, {"thread.sp", 40}} {
		got, err := b.Offset("task_struct", c.path)
		if err != nil || got != c.want {
			t.Errorf("%s: %d %v, want %d", c.path, got, err, c.want)
		}
	}
	if n, err := b.Sizeof("task_struct"); err != nil || n != 64 {
		t.Errorf("sizeof %d %v", n, err)
	}
	if _, err := b.Offset("task_struct", "nope"); !errors.Is(err, ErrNoType) {
		t.Errorf("missing member: %v", err)
	}
	if _, err := b.Offset("mm_struct", "pgd"); !errors.Is(err, ErrNoType) {
		t.Errorf("missing struct: %v", err)
	}
}

func FuzzBTF(f *testing.F) {
	f.Add(sampleBTF())
	f.Add(wrappingBTF())
	f.Fuzz(func(t *testing.T, data []byte) {
		var b *BTF
		var err error
		// Counts come from the data: parsing may cost a small multiple of
		// its size, never what a header claims.
		if n := allocated(func() { b, err = ParseBTF(data) }); n > 64*uint64(len(data))+1<<20 {
			t.Fatalf("parsing %d bytes allocated %d", len(data), n)
		}
		if err != nil {
			return
		}
		b.Offset("task_struct", "thread.sp")
		b.Sizeof("task_struct")
	})
}

// TestWriteFuzzCorpus refreshes testdata/fuzz/FuzzBTF and FuzzBTFTypes.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("VMCORE_WRITE_CORPUS") == "" {
		t.Skip("set VMCORE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzBTF")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "sample"), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", sampleBTF())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "wrapping-offsets"), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", wrappingBTF())), 0o644); err != nil {
		t.Fatal(err)
	}
	types := filepath.Join("testdata", "fuzz", "FuzzBTFTypes")
	os.MkdirAll(types, 0o755)
	if err := os.WriteFile(filepath.Join(types, "typegraph"), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", typegraphBTF())), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wrappingBTF has section offsets whose 32-bit sums wrap, and a struct
// claiming 65535 members in a few bytes.
func wrappingBTF() []byte {
	b := sampleBTF()
	le := binary.LittleEndian
	le.PutUint32(b[16:], 0xffffffff) // str_off
	le.PutUint32(b[20:], 2)          // str_len: 0xffffffff+2 wraps to 1
	c := sampleBTF()
	le.PutUint32(c[btfHeaderSize+2*btfTypeSize+4:], BTF_KIND_STRUCT<<24|0xffff)
	return append(b[:btfHeaderSize:btfHeaderSize], c[btfHeaderSize:]...)
}
