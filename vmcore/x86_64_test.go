package vmcore

import (
	"encoding/binary"
	"errors"
	"testing"
)

// physPages is sparse physical memory for page-table tests.
type physPages map[uint64][]byte

func (m physPages) ReadPhys(p []byte, addr uint64) (int, error) {
	for i := range p {
		a := addr + uint64(i)
		pg := m[a&^0xfff]
		if pg == nil {
			return i, &PhysError{Addr: a, Offset: -1, Err: ErrNotPresent}
		}
		p[i] = pg[a&0xfff]
	}
	return len(p), nil
}

func (m physPages) set(addr, val uint64) {
	pg := m[addr&^0xfff]
	if pg == nil {
		pg = make([]byte, 4096)
		m[addr&^0xfff] = pg
	}
	binary.LittleEndian.PutUint64(pg[addr&0xfff:], val)
}

// mapPage installs va -> pa in a table tree rooted at root, allocating
// tables from *next; leaf is the level of the final entry (1 = 4 KiB,
// 2 = 2 MiB, 3 = 1 GiB).
func (m physPages) mapPage(root uint64, levels int, va, pa uint64, leaf int, next *uint64, sme uint64) {
	table := root
	for lvl := levels; lvl > leaf; lvl-- {
		idx := (va >> (12 + 9*uint(lvl-1))) & 511
		ea := table + idx*8
		var e uint64
		if pg := m[ea&^0xfff]; pg != nil {
			e = binary.LittleEndian.Uint64(pg[ea&0xfff:])
		}
		if e&1 == 0 {
			*next += 4096
			m[*next] = make([]byte, 4096)
			e = *next | 0x63 | sme
			m.set(ea, e)
		}
		table = e & pteAddrMask &^ sme
	}
	idx := (va >> (12 + 9*uint(leaf-1))) & 511
	e := pa | 0x63 | sme
	if leaf > 1 {
		e |= _PAGE_PSE
	}
	m.set(table+idx*8, e)
}

func TestPageTableWalk(t *testing.T) {
	for _, c := range []struct {
		levels int
		sme    uint64
	}{{4, 0}, {5, 0}, {4, 1 << 47}, {5, 1 << 51}} {
		m := physPages{}
		root := uint64(0x100000)
		m[root] = make([]byte, 4096)
		next := uint64(0x200000)
		kernelVA := uint64(0xffffffff81000000)
		if c.levels == 5 {
			kernelVA = 0xff11000000200000
		}
		m.mapPage(root, c.levels, kernelVA, 0x5000, 1, &next, c.sme)
		m.mapPage(root, c.levels, kernelVA+0x200000, 0x40000000, 2, &next, c.sme)
		gigVA := uint64(0xffff888040000000)
		if c.levels == 5 {
			gigVA = 0xff11000040000000
		}
		m.mapPage(root, c.levels, gigVA, 0x80000000, 3, &next, c.sme)
		pt, err := NewPageTable(m, root, c.levels, c.sme)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			va, pa, size uint64
		}{
			{kernelVA + 0x123, 0x5123, 4096},
			{kernelVA + 0x200000 + 0x1234f, 0x4001234f, 2 << 20},
			{gigVA + 0x3456789, 0x83456789, 1 << 30},
		} {
			for pass := 0; pass < 2; pass++ { // cold, then through the cache
				tr, err := pt.Translate(tc.va)
				if err != nil {
					t.Fatalf("%d-level sme %x: 0x%x: %v", c.levels, c.sme, tc.va, err)
				}
				if tr.Phys != tc.pa || tr.PageSize != tc.size {
					t.Fatalf("%d-level: 0x%x -> 0x%x/%d, want 0x%x/%d", c.levels, tc.va, tr.Phys, tr.PageSize, tc.pa, tc.size)
				}
			}
		}
		// Unmapped next to a mapped 4 KiB page: stops at the PTE level.
		_, err = pt.Translate(kernelVA + 0x1000)
		var te *TranslateError
		if !errors.As(err, &te) || !errors.Is(err, ErrNotMapped) || te.Level != LevelPTE {
			t.Fatalf("unmapped: %v", err)
		}
		// Far away: stops at the top level.
		_, err = pt.Translate(0xffffc90000000000 &^ 0)
		if !errors.As(err, &te) || te.Level != LevelPGD {
			t.Fatalf("unmapped top: %v", err)
		}
		// Non-canonical.
		if _, err := pt.Translate(0x8000000000000000); !errors.Is(err, ErrNotMapped) {
			t.Fatalf("non-canonical: %v", err)
		}
		// A table that points to memory the dump lacks: a read error, not a hang.
		m.set(root+8*5, 0x7770000000|1)
		_, err = pt.Translate(5 << (12 + 9*uint(c.levels-1)))
		if !errors.Is(err, ErrNotPresent) {
			t.Fatalf("table outside the dump: %v", err)
		}
	}
}

// TestPageTableLoop: an entry that points back at its own table makes
// every walk still end after at most five reads.
func TestPageTableLoop(t *testing.T) {
	m := physPages{}
	root := uint64(0x1000)
	for i := uint64(0); i < 512; i++ {
		m.set(root+i*8, root|1)
	}
	pt, _ := NewPageTable(m, root, 5, 0)
	tr, err := pt.Translate(0x1234567)
	if err != nil || tr.Phys != root|0x567 {
		t.Fatalf("self-map: %v %x", err, tr.Phys)
	}
}
