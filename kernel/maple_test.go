package kernel

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// testMapleLayout is a 64-bit kernel's maple node layout (struct
// maple_range_64: parent, 15 pivots, 16 slots, metadata in the last
// slot; struct maple_arange_64: parent, 9 pivots, 10 slots, 10 gaps,
// metadata), for trees built in memory by the tests. The walk itself
// takes these from the type information.
func testMapleLayout() *vmaLayout {
	r64 := mapleNodeLayout{pivot: 8, nPivots: 15, slot: 128, nSlots: 16, metaEnd: 248, hasMeta: true}
	a64 := mapleNodeLayout{pivot: 8, nPivots: 9, slot: 80, nSlots: 10, metaEnd: 240, hasMeta: true}
	return &vmaLayout{nodeSize: 256, leafBelow: 2, arangeType: 3,
		nodes: map[int64]mapleNodeLayout{1: r64, 2: r64, 3: a64}}
}

// mapleMem is memory holding maple nodes at 256-byte aligned addresses.
type mapleMem map[uint64][]byte

func (m mapleMem) read(p []byte, addr uint64) error {
	n, ok := m[addr]
	if !ok || len(p) > len(n) {
		return fmt.Errorf("address %#x not in the dump", addr)
	}
	copy(p, n)
	return nil
}

// node writes a node of type typ with pivots, slots and metadata end at
// addr and returns its encoded pointer (mt_mk_node: MAPLE_ENODE_NULL is
// bit 2).
func (m mapleMem) node(addr uint64, typ int64, parent uint64, pivots, slots []uint64, end byte) uint64 {
	l := testMapleLayout().nodes[typ]
	b := make([]byte, 256)
	binary.LittleEndian.PutUint64(b, parent)
	for i, p := range pivots {
		binary.LittleEndian.PutUint64(b[l.pivot+uint64(i)*8:], p)
	}
	for i, s := range slots {
		binary.LittleEndian.PutUint64(b[l.slot+uint64(i)*8:], s)
	}
	b[l.metaEnd] = end
	m[addr] = b
	return addr | uint64(typ)<<MAPLE_NODE_TYPE_SHIFT | 4
}

const maxULong = ^uint64(0)

// A two-level tree: an arange_64 root over two leaves; NULL gaps and an
// XA_ZERO_ENTRY (xa_mk_internal(257)) hold no VMA.
func TestMapleWalk(t *testing.T) {
	m := mapleMem{}
	const tree, rootAddr, leafA, leafB = 0x1000, 0x10000, 0x10100, 0x10200
	a := m.node(leafA, 1, rootAddr, []uint64{0x3fff, 0x5fff}, []uint64{0, 0xaaa0}, 1)
	zero := uint64(257<<2 | 2)
	b := m.node(leafB, 1, rootAddr, []uint64{0x8fff, 0x9fff, 0xafff, maxULong}, []uint64{0xbbb0, zero, 0xccc0, 0}, 3)
	root := m.node(rootAddr, 3, tree|1, []uint64{0x5fff}, []uint64{a, b}, 1) | 2 // mte_mk_root
	got, err := walkMaple(root, testMapleLayout(), m.read)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{0xaaa0, 0xbbb0, 0xccc0}; !slices.Equal(got, want) {
		t.Fatalf("entries %x, want %x", got, want)
	}

	// A full leaf: no metadata, its last slot runs to the node's max.
	full := mapleMem{}
	var piv, slots []uint64
	for i := uint64(0); i < 16; i++ {
		if i < 15 {
			piv = append(piv, 0x1000*(i+1)-1)
		}
		slots = append(slots, 0x100000+i*0x100)
	}
	leaf := full.node(0x20000, 1, tree|1, piv, slots, 0xff) // metadata overlaps slot 15
	got, err = walkMaple(leaf|2, testMapleLayout(), full.read)
	if err != nil || len(got) != 16 {
		t.Fatalf("full leaf: %d entries (%v)", len(got), err)
	}
}

// A corrupted tree ends with an error naming the node, not a hang.
func TestMapleWalkCorrupt(t *testing.T) {
	const rootAddr = 0x10000
	for _, c := range []struct {
		name  string
		build func(m mapleMem) uint64
	}{
		{"loop", func(m mapleMem) uint64 {
			enc := uint64(rootAddr | 3<<MAPLE_NODE_TYPE_SHIFT | 4)
			return m.node(rootAddr, 3, 1, []uint64{0x5fff}, []uint64{enc, enc}, 1) | 2
		}},
		{"unreadable child", func(m mapleMem) uint64 {
			return m.node(rootAddr, 3, 1, []uint64{0x5fff}, []uint64{0x70000 | 1<<MAPLE_NODE_TYPE_SHIFT | 4, 0}, 1) | 2
		}},
		{"pivots backwards", func(m mapleMem) uint64 {
			return m.node(rootAddr, 1, 1, []uint64{0x5fff, 0x1000}, []uint64{0xaaa0, 0xbbb0, 0xccc0}, 2) | 2
		}},
		{"data end past the slots", func(m mapleMem) uint64 {
			return m.node(rootAddr, 3, 1, []uint64{0x5fff}, nil, 200) | 2
		}},
		{"dense node", func(m mapleMem) uint64 {
			return m.node(rootAddr, 3, 1, []uint64{0x5fff}, []uint64{0x30000 | 4}, 0) | 2
		}},
		{"dead node", func(m mapleMem) uint64 {
			return m.node(rootAddr, 1, rootAddr, []uint64{0x5fff}, []uint64{0xaaa0}, 0) | 2
		}},
	} {
		m := mapleMem{}
		root := c.build(m)
		if _, err := walkMaple(root, testMapleLayout(), m.read); err == nil {
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

// FuzzMapleWalk: garbage nodes never panic the walk or make it run away.
func FuzzMapleWalk(f *testing.F) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 64; i++ {
		b := make([]byte, 256*4)
		r.Read(b)
		// Plausible shapes: node pointers into the same four nodes.
		for j := 0; j < len(b); j += 8 {
			if r.Intn(3) == 0 {
				binary.LittleEndian.PutUint64(b[j:], 0x10000+uint64(r.Intn(4))*256|uint64(r.Intn(4))<<MAPLE_NODE_TYPE_SHIFT|4)
			}
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := mapleMem{}
		for i := 0; i+256 <= len(b) && i < 256*64; i += 256 {
			m[0x10000+uint64(i)] = b[i : i+256]
		}
		for typ := uint64(0); typ < 4; typ++ {
			got, _ := walkMaple(0x10000|typ<<MAPLE_NODE_TYPE_SHIFT|6, testMapleLayout(), m.read)
			if len(got) > 16*len(m) {
				t.Fatalf("%d entries from %d nodes", len(got), len(m))
			}
		}
	})
}
