package symbols

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// MemReader reads the dumped kernel's memory at run-time addresses.
type MemReader interface {
	Read(p []byte, addr uint64) error
}

// Kallsyms is the kernel's own symbol table decoded from a dump, located
// by the kallsyms_* symbols VMCOREINFO carries since 6.0. It names
// addresses and finds symbols without any vmlinux file.
type Kallsyms struct {
	addrs map[string]uint64
	types map[string]byte
	byPos []ksym // sorted by address
}

type ksym struct {
	addr uint64
	name string
	typ  byte
}

// Bounds on what the dumped table may claim. A 6.12 kernel has about
// 200,000 symbols of 30 bytes on average.
const (
	maxKallsyms = 1 << 22
	// KSYM_NAME_LEN is the kernel's bound on a symbol name (512 since 6.1,
	// 128 before); the table stores a type letter before it.
	KSYM_NAME_LEN = 512
	// maxKallsymsNameBytes bounds all decoded names together: tokens
	// expand, so the bytes read do not bound them.
	maxKallsymsNameBytes = 64 << 20
)

// ErrNoKallsyms means VMCOREINFO does not locate the symbol table.
var ErrNoKallsyms = errors.New("VMCOREINFO has no kallsyms symbols (kernels before 6.0 do not publish them)")

// LoadKallsyms decodes the table. vmcoreinfo holds SYMBOL(x) values by
// name (kallsyms_names, _num_syms, _token_table, _token_index, _offsets,
// _relative_base or _addresses, and _stext, which picks the address
// encoding).
func LoadKallsyms(mem MemReader, vmcoreinfo map[string]uint64) (*Kallsyms, error) {
	need := func(n string) (uint64, error) {
		v, ok := vmcoreinfo[n]
		if !ok {
			return 0, fmt.Errorf("%w: no SYMBOL(%s)", ErrNoKallsyms, n)
		}
		return v, nil
	}
	var errs []error
	get := func(n string) uint64 {
		v, err := need(n)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	namesAddr, numAddr := get("kallsyms_names"), get("kallsyms_num_syms")
	tokTableAddr, tokIndexAddr := get("kallsyms_token_table"), get("kallsyms_token_index")
	stext := get("_stext")
	if len(errs) > 0 {
		return nil, errs[0]
	}
	le := binary.LittleEndian
	var b4 [4]byte
	if err := mem.Read(b4[:], numAddr); err != nil {
		return nil, fmt.Errorf("kallsyms_num_syms at 0x%x: %w", numAddr, err)
	}
	num := le.Uint32(b4[:])
	if num == 0 || num > maxKallsyms {
		return nil, fmt.Errorf("kallsyms_num_syms at 0x%x: %d symbols, want 1 to %d", numAddr, num, maxKallsyms)
	}
	idx := make([]byte, 512)
	if err := mem.Read(idx, tokIndexAddr); err != nil {
		return nil, fmt.Errorf("kallsyms_token_index at 0x%x: %w", tokIndexAddr, err)
	}
	var maxOff uint16
	for i := 0; i < 256; i++ {
		maxOff = max(maxOff, le.Uint16(idx[2*i:]))
	}
	table := make([]byte, int(maxOff)+256)
	if err := mem.Read(table, tokTableAddr); err != nil {
		return nil, fmt.Errorf("kallsyms_token_table at 0x%x (%d bytes): %w", tokTableAddr, len(table), err)
	}
	var tokens [256]string
	for i := range tokens {
		t := table[le.Uint16(idx[2*i:]):]
		if z := indexNUL(t); z >= 0 {
			t = t[:z]
		}
		tokens[i] = string(t)
	}
	// Names: a length (one byte, or two as ULEB128 with 6.1's big
	// symbols) then that many token indexes.
	names := make([]string, 0, min(num, 1<<16))
	r := &memStream{mem: mem, addr: namesAddr}
	total := 0
	for i := uint32(0); i < num; i++ {
		at := r.pos()
		l, err := r.byte()
		if err != nil {
			return nil, fmt.Errorf("kallsyms_names entry %d at 0x%x: %w", i, at, err)
		}
		n := int(l)
		if l&0x80 != 0 {
			hi, err := r.byte()
			if err != nil {
				return nil, fmt.Errorf("kallsyms_names entry %d at 0x%x: %w", i, at, err)
			}
			n = int(l&0x7f) | int(hi)<<7
		}
		var sb strings.Builder
		for j := 0; j < n; j++ {
			c, err := r.byte()
			if err != nil {
				return nil, fmt.Errorf("kallsyms_names entry %d at 0x%x: %w", i, at, err)
			}
			if sb.Len()+len(tokens[c]) > 1+KSYM_NAME_LEN { // + the type letter
				return nil, fmt.Errorf("kallsyms_names entry %d at 0x%x: name longer than KSYM_NAME_LEN (%d)", i, at, KSYM_NAME_LEN)
			}
			sb.WriteString(tokens[c])
		}
		if total += sb.Len(); total > maxKallsymsNameBytes {
			return nil, fmt.Errorf("kallsyms_names at 0x%x: names of more than %d bytes in all", namesAddr, maxKallsymsNameBytes)
		}
		names = append(names, sb.String())
	}
	addrs, err := kallsymsAddresses(mem, vmcoreinfo, num, names, stext)
	if err != nil {
		return nil, err
	}
	k := &Kallsyms{addrs: make(map[string]uint64, num), types: make(map[string]byte, num)}
	for i, full := range names {
		if len(full) < 2 {
			continue
		}
		typ, name := full[0], full[1:]
		if _, dup := k.addrs[name]; !dup || typ == 'T' || typ == 'D' || typ == 'B' || typ == 'R' {
			k.addrs[name], k.types[name] = addrs[i], typ
		}
		k.byPos = append(k.byPos, ksym{addrs[i], name, typ})
	}
	sort.SliceStable(k.byPos, func(i, j int) bool { return k.byPos[i].addr < k.byPos[j].addr })
	return k, nil
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// kallsymsAddresses tries each address encoding the kernel has used and
// keeps the one that puts _stext where VMCOREINFO says it is.
func kallsymsAddresses(mem MemReader, vi map[string]uint64, num uint32, names []string, stext uint64) ([]uint64, error) {
	stextIdx := -1
	for i, n := range names {
		if len(n) > 1 && n[1:] == "_stext" {
			stextIdx = i
			break
		}
	}
	if stextIdx < 0 {
		return nil, errors.New("kallsyms has no _stext to check its addresses against")
	}
	le := binary.LittleEndian
	if a, ok := vi["kallsyms_addresses"]; ok {
		raw := make([]byte, 8*num)
		if err := mem.Read(raw, a); err == nil {
			out := make([]uint64, num)
			for i := range out {
				out[i] = le.Uint64(raw[8*i:])
			}
			if out[stextIdx] == stext {
				return out, nil
			}
		}
	}
	offAddr, ok := vi["kallsyms_offsets"]
	if !ok {
		return nil, fmt.Errorf("%w: no SYMBOL(kallsyms_offsets)", ErrNoKallsyms)
	}
	raw := make([]byte, 4*num)
	if err := mem.Read(raw, offAddr); err != nil {
		return nil, fmt.Errorf("kallsyms_offsets at 0x%x (%d entries): %w", offAddr, num, err)
	}
	var base uint64
	if a, ok := vi["kallsyms_relative_base"]; ok {
		var b8 [8]byte
		if err := mem.Read(b8[:], a); err != nil {
			return nil, fmt.Errorf("kallsyms_relative_base at 0x%x: %w", a, err)
		}
		base = le.Uint64(b8[:])
	}
	encodings := []func(i int, off int32) uint64{
		func(i int, off int32) uint64 { // absolute per-CPU (x86_64 until 6.15)
			if off >= 0 {
				return uint64(off)
			}
			return base - 1 - uint64(int64(off))
		},
		func(i int, off int32) uint64 { return base + uint64(uint32(off)) },                 // base-relative
		func(i int, off int32) uint64 { return offAddr + uint64(4*i) + uint64(int64(off)) }, // place-relative (7.0+)
	}
	for _, enc := range encodings {
		if enc(stextIdx, int32(le.Uint32(raw[4*stextIdx:]))) != stext {
			continue
		}
		out := make([]uint64, num)
		for i := range out {
			out[i] = enc(i, int32(le.Uint32(raw[4*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("kallsyms_offsets at 0x%x: no address encoding places _stext where VMCOREINFO says (0x%x)", offAddr, stext)
}

// memStream reads kernel memory sequentially in pages.
type memStream struct {
	mem  MemReader
	addr uint64
	buf  []byte
}

// pos is the address of the next byte.
func (s *memStream) pos() uint64 { return s.addr - uint64(len(s.buf)) }

func (s *memStream) byte() (byte, error) {
	if len(s.buf) == 0 {
		n := 4096 - s.addr%4096
		s.buf = make([]byte, n)
		if err := s.mem.Read(s.buf, s.addr); err != nil {
			return 0, err
		}
		s.addr += n
	}
	c := s.buf[0]
	s.buf = s.buf[1:]
	return c, nil
}

// Address returns a symbol's run-time address.
func (k *Kallsyms) Address(name string) (uint64, error) {
	a, ok := k.addrs[name]
	if !ok {
		return 0, fmt.Errorf("kallsyms: %w: %s", ErrNoSymbol, name)
	}
	return a, nil
}

// Lookup names a run-time address by the nearest symbol at or below it.
func (k *Kallsyms) Lookup(addr uint64) (string, uint64, bool) {
	i := sort.Search(len(k.byPos), func(i int) bool { return k.byPos[i].addr > addr }) - 1
	if i < 0 || addr-k.byPos[i].addr >= 1<<20 {
		return "", 0, false
	}
	return k.byPos[i].name, addr - k.byPos[i].addr, true
}

// Len returns the number of symbols.
func (k *Kallsyms) Len() int { return len(k.byPos) }

// TypeLetter is the type letter the kernel's table stores with a symbol.
func (k *Kallsyms) TypeLetter(name string) (byte, bool) {
	c, ok := k.types[name]
	return c, ok
}

// KallsymsEntry is one symbol of the kernel's table.
type KallsymsEntry struct {
	Name string
	Addr uint64
	Type byte // the letter the table stores: T, t, D, d, B, b, R, r, A...
}

// Entries lists the table's symbols in address order (for an equal
// address, in the table's order).
func (k *Kallsyms) Entries() []KallsymsEntry {
	out := make([]KallsymsEntry, 0, len(k.byPos))
	for _, s := range k.byPos {
		out = append(out, KallsymsEntry{Name: s.name, Addr: s.addr, Type: s.typ})
	}
	return out
}
