package unwind

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ORCVersion names a layout of struct orc_entry. The numbering is this
// package's: the kernel does not number them.
type ORCVersion int

const (
	ORCv1 ORCVersion = 1 // v4.14 - v6.2: type:2, end:1
	ORCv2 ORCVersion = 2 // v6.3: type:2, signal:1, end:1
	ORCv3 ORCVersion = 3 // v6.4+: type:3 (UNDEFINED, END_OF_STACK, ...), signal:1
	ORCv4 ORCVersion = 4 // v7.1+: as v3 with registers renumbered
)

func (v ORCVersion) String() string { return "ORC v" + strconv.Itoa(int(v)) }

// .orc_header hashes (SHA-1 of orc_types.h, the kernel's own version tag).
var orcHeaderVersions = map[string]ORCVersion{
	"db84aed4103b31dd51e017f8f79783ca985c2c51": ORCv2,
	"fe5d32bf581bd63b2ca9a5c65ba5a625eab3fe24": ORCv3,
	"137c36ad7627c4dd55932176bb0ecdbd5041fc82": ORCv4,
}

// ORCVersionOf tells the layout from the .orc_header bytes when the kernel
// has them (6.3.10+/6.4+), else from the release: before 6.3 every kernel
// used v1.
func ORCVersionOf(header []byte, osrelease string) (ORCVersion, error) {
	if len(header) > 0 {
		v, ok := orcHeaderVersions[hex.EncodeToString(header)]
		if !ok {
			return 0, fmt.Errorf("unknown .orc_header %x: a newer ORC layout", header)
		}
		return v, nil
	}
	var major, minor int
	parts := strings.SplitN(osrelease, ".", 3)
	if len(parts) >= 2 {
		major, _ = strconv.Atoi(parts[0])
		minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	switch {
	case major == 0:
		return 0, fmt.Errorf("cannot tell the ORC layout of release %q", osrelease)
	case major > 6 || major == 6 && minor >= 4:
		return ORCv3, nil
	case major == 6 && minor == 3:
		return ORCv2, nil
	}
	return ORCv1, nil
}

// ORC register and type codes, normalized across versions.
type orcReg uint8

const (
	regUndefined orcReg = iota
	regPrevSP
	regDX
	regDI
	regBP
	regSP
	regR10
	regR13
	regBPIndirect
	regSPIndirect
	regAX
)

type orcType uint8

const (
	typeUndefined orcType = iota
	typeEndOfStack
	typeCall
	typeRegs
	typeRegsPartial
)

func (t orcType) String() string {
	return [...]string{"undefined", "end of stack", "call", "regs", "regs partial"}[t]
}

// Entry is one decoded orc_entry.
type Entry struct {
	SPOffset, BPOffset int16
	SPReg, BPReg       orcReg
	Type               orcType
	Signal             bool
}

const orcEntrySize = 6

func decodeEntry(v ORCVersion, b []byte) Entry {
	e := Entry{SPOffset: int16(binary.LittleEndian.Uint16(b)), BPOffset: int16(binary.LittleEndian.Uint16(b[2:]))}
	bits := binary.LittleEndian.Uint16(b[4:])
	sp, bp := orcReg(bits&0xf), orcReg(bits>>4&0xf)
	if v == ORCv4 {
		// 7.1 renumbered: UNDEFINED 0, AX 1, DX 2, SP 3, BP 4, DI 5, R10 6,
		// R13 7, PREV_SP 8, SP_INDIRECT 9, BP_INDIRECT 10.
		m := [16]orcReg{regUndefined, regAX, regDX, regSP, regBP, regDI, regR10, regR13, regPrevSP, regSPIndirect, regBPIndirect}
		sp, bp = m[sp], m[bp]
	} else if sp > regSPIndirect || bp > regSPIndirect {
		sp, bp = regUndefined, regUndefined
	}
	e.SPReg, e.BPReg = sp, bp
	switch v {
	case ORCv1, ORCv2:
		t := bits >> 8 & 3
		var end bool
		if v == ORCv1 {
			end = bits>>10&1 != 0
		} else {
			e.Signal = bits>>10&1 != 0
			end = bits>>11&1 != 0
		}
		switch {
		case sp == regUndefined && end:
			e.Type = typeEndOfStack
		case sp == regUndefined:
			e.Type = typeUndefined
		case t == 0:
			e.Type = typeCall
		case t == 1:
			e.Type = typeRegs
		case t == 2:
			e.Type = typeRegsPartial
		default:
			e.Type = typeUndefined
		}
	default:
		t := bits >> 8 & 7
		e.Signal = bits>>11&1 != 0
		if t <= 4 {
			e.Type = orcType(t)
		}
	}
	if e.Type == typeRegs || e.Type == typeRegsPartial {
		e.Signal = true
	}
	return e
}

// Table is one ORC table (vmlinux's or a module's): sorted run-time
// addresses and their entries.
type Table struct {
	Name    string
	ips     []uint64
	entries []Entry
}

// maxORCEntries bounds a table: vmlinux has about a million.
const maxORCEntries = 1 << 24

// ParseORC decodes .orc_unwind_ip (int32 offsets relative to each
// entry's own address, which is ipAddr + 4*i at run time) and .orc_unwind.
func ParseORC(name string, v ORCVersion, ipData []byte, ipAddr uint64, unwindData []byte) (*Table, error) {
	n := len(ipData) / 4
	if n == 0 || len(ipData)%4 != 0 || len(unwindData) != n*orcEntrySize {
		return nil, fmt.Errorf("%s: ORC tables of %d and %d bytes do not match", name, len(ipData), len(unwindData))
	}
	if n > maxORCEntries {
		return nil, fmt.Errorf("%s: %d ORC entries is more than %d", name, n, maxORCEntries)
	}
	t := &Table{Name: name, ips: make([]uint64, n), entries: make([]Entry, n)}
	sorted := true
	for i := 0; i < n; i++ {
		rel := int32(binary.LittleEndian.Uint32(ipData[4*i:]))
		t.ips[i] = ipAddr + uint64(4*i) + uint64(int64(rel))
		t.entries[i] = decodeEntry(v, unwindData[orcEntrySize*i:])
		if i > 0 && t.ips[i] < t.ips[i-1] {
			sorted = false
		}
	}
	if !sorted { // module tables may be unsorted; keep entry with its ip
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return t.ips[idx[a]] < t.ips[idx[b]] })
		ips, es := make([]uint64, n), make([]Entry, n)
		for i, j := range idx {
			ips[i], es[i] = t.ips[j], t.entries[j]
		}
		t.ips, t.entries = ips, es
	}
	return t, nil
}

// Range returns the lowest and highest address the table covers.
func (t *Table) Range() (lo, hi uint64) { return t.ips[0], t.ips[len(t.ips)-1] }

// Find returns the entry covering pc: the last one at or below it.
func (t *Table) Find(pc uint64) (Entry, bool) {
	i := sort.Search(len(t.ips), func(i int) bool { return t.ips[i] > pc }) - 1
	if i < 0 {
		return Entry{}, false
	}
	// On duplicate addresses prefer a real entry over a terminator.
	for i > 0 && t.ips[i-1] == t.ips[i] && t.entries[i].Type == typeUndefined {
		i--
	}
	return t.entries[i], true
}

// Debug lists the table entries around pc (for diagnosis).
func (t *Table) Debug(pc uint64) string {
	i := sort.Search(len(t.ips), func(i int) bool { return t.ips[i] > pc }) - 1
	var b strings.Builder
	for j := max(0, i-3); j < min(len(t.ips), i+3); j++ {
		fmt.Fprintf(&b, "%x %+v\n", t.ips[j], t.entries[j])
	}
	return b.String()
}
