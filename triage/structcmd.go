package triage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// Bounds of one `struct`: bytes read from the dump and elements shown of
// one array (or characters of a string), the rest elided as "..." (512:
// crash's gdb `print elements`). crash prints arrays whole, with no
// <repeats N times> runs: so do we, up to the bound.
// maxStructValues bounds the values of one print: with zero-sized
// elements (hostile or odd types) arrays of arrays would not be bounded
// by the bytes read.
const (
	maxStructBytes  = 64 << 10
	maxArrayShown   = 512
	maxStructValues = 1 << 17
)

// kernelHalf is where kernel addresses start: a pointer below it (a
// per-CPU offset, a small number) is not named by the symbol it would
// fall in.
const kernelHalf = 0xffff800000000000

// StructValue is one node of `struct`'s output: a scalar's value, or a
// struct's, union's or array's members (array elements are named [i]).
type StructValue struct {
	Name    string        `json:"name"`
	Type    string        `json:"type"`
	Value   string        `json:"value,omitempty"`
	Members []StructValue `json:"members,omitempty"`
	// Elided counts array elements past those shown.
	Elided uint64 `json:"elided,omitempty"`

	array bool
	comma bool // a member line crash ends with ","
}

// StructResult is `struct NAME[.MEMBER[,MEMBER...]] ADDR`. Members are
// named by the path asked for ("thread.sp") and printed as crash prints
// them: each member's line as in the whole struct's print, so with a
// comma unless it is the last member of the struct holding it.
type StructResult struct {
	Type    string `json:"type"`
	Address string `json:"address"`
	// Value is the whole struct; Members the members asked for instead.
	Value   *StructValue  `json:"value,omitempty"`
	Members []StructValue `json:"members,omitempty"`
	Notes   []string      `json:"notes,omitempty"`

	// CPU is the CPU of a per-CPU variable's copy (SYMBOL:CPU).
	CPU *int `json:"cpu,omitempty"`

	header string // crash's first line: "struct NAME", typedef names too
}

// PerCPUStructs is `struct NAME SYMBOL:CPUS`: one copy of a per-CPU
// variable per CPU, each printed after crash's "[CPU]: ADDRESS" line.
type PerCPUStructs []*StructResult

func (l PerCPUStructs) text(w io.Writer) error {
	for _, r := range l {
		if _, err := fmt.Fprintf(w, "[%d]: %s\n", *r.CPU, r.Address); err != nil {
			return err
		}
		if err := r.text(w); err != nil {
			return err
		}
	}
	return nil
}

// StructPerCPU prints the copies of per-CPU variable sym on the CPUs
// of spec, as crash's SYMBOL:a (all), SYMBOL:N, SYMBOL:N,M and
// SYMBOL:N-M.
func (t *Triage) StructPerCPU(typeSpec, sym, spec string) (PerCPUStructs, error) {
	cpus, err := parseCPUs(spec, len(t.K.CPUs))
	if err != nil {
		return nil, err
	}
	var l PerCPUStructs
	for _, cpu := range cpus {
		a, err := t.K.PerCPU(sym, cpu)
		if err != nil {
			return nil, fmt.Errorf("struct: %s on CPU %d: %w", sym, cpu, err)
		}
		r, err := t.Struct(typeSpec, fmt.Sprintf("%x", a))
		if err != nil {
			return nil, err
		}
		r.CPU = &cpu
		l = append(l, r)
	}
	return l, nil
}

// parseCPUs reads crash's CPU list: a, N, N-M, comma-separated.
func parseCPUs(spec string, n int) ([]int, error) {
	if spec == "a" || spec == "all" {
		cpus := make([]int, n)
		for i := range cpus {
			cpus[i] = i
		}
		return cpus, nil
	}
	var cpus []int
	for _, f := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= n {
			return nil, fmt.Errorf("%w: struct: CPU %q is not a CPU of this dump (0-%d, or a)", ErrUsage, f, n-1)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// typeLookup is the model's type source as a TypeLookup, or why not.
func (t *Triage) typeLookup(cmd string) (symbols.TypeLookup, error) {
	l, ok := t.K.Types.(symbols.TypeLookup)
	if !ok {
		return nil, fmt.Errorf("%s: the type source (%s) cannot give whole types", cmd, symbols.TypesName(t.K.Types))
	}
	return l, nil
}

// structType finds NAME as crash's struct command does: a struct, else
// a union, else a typedef of one.
func structType(l symbols.TypeLookup, name string) (*symbols.CType, error) {
	if strings.HasPrefix(name, "struct ") || strings.HasPrefix(name, "union ") {
		return l.LookupType(name)
	}
	var first error
	for _, n := range []string{"struct " + name, "union " + name, name} {
		ct, err := l.LookupType(n)
		if err == nil {
			if r := ct.Resolved(); r != nil && (r.Kind == symbols.TypeStruct || r.Kind == symbols.TypeUnion) {
				return ct, nil
			}
			continue
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("%w: %s is not a struct or union", symbols.ErrNoType, name)
	}
	return nil, first
}

// Struct reads a struct (or the members named after its name: "a",
// "a.b", "a,b") at addr (hex, or a symbol) and gives its values.
func (t *Triage) Struct(spec, addrArg string) (*StructResult, error) {
	l, err := t.typeLookup("struct")
	if err != nil {
		return nil, err
	}
	name, members, hasMembers := strings.Cut(spec, ".")
	ct, err := structType(l, name)
	if err != nil {
		return nil, fmt.Errorf("struct %s: %w", name, err)
	}
	root := ct.Resolved()
	if root.Incomplete {
		return nil, fmt.Errorf("struct %s: only declared, no definition in %s", name, symbols.TypesName(t.K.Types))
	}
	addr, err := t.parseAddr(addrArg)
	if err != nil {
		return nil, fmt.Errorf("struct %s: %w", name, err)
	}
	res := &StructResult{Type: symbols.Declare(ct, ""), Address: fmt.Sprintf("%x", addr)}
	res.header = res.Type
	if ct.Kind == symbols.TypeTypedef {
		res.header = root.Kind.String() + " " + ct.Name // crash: "struct spinlock_t {"
	}
	p := &valuePrinter{t: t, addr: addr}
	if !hasMembers {
		size := root.Size
		if size > maxStructBytes {
			res.Notes = append(res.Notes, fmt.Sprintf("%s is %d bytes: only its first %d are read", res.Type, size, maxStructBytes))
			size = maxStructBytes
		}
		buf, err := t.readStruct(res.Type, addr, 0, size)
		if err != nil {
			return nil, err
		}
		p.buf, p.base = buf, 0
		v := p.value("", ct, 0, 0, 0)
		res.Value = &v
		if p.count > maxStructValues {
			res.Notes = append(res.Notes, fmt.Sprintf("more than %d values: the rest shown as ...", maxStructValues))
		}
		return res, nil
	}
	for _, path := range strings.Split(members, ",") {
		m, last, err := memberPath(ct, path)
		if err != nil {
			return nil, fmt.Errorf("struct %s: %w", name, err)
		}
		lo := m.BitOffset / 8
		hi := (m.BitOffset + m.BitSize + 7) / 8
		if m.BitSize == 0 {
			hi = lo + m.Type.ByteSize()
		}
		if hi-lo > maxStructBytes {
			res.Notes = append(res.Notes, fmt.Sprintf("%s.%s is %d bytes: only its first %d are read", name, path, hi-lo, maxStructBytes))
			hi = lo + maxStructBytes
		}
		buf, err := t.readStruct(res.Type+"."+path, addr, lo, hi-lo)
		if err != nil {
			return nil, err
		}
		p.buf, p.base = buf, lo*8
		v := p.value(path, m.Type, m.BitOffset, m.BitSize, 0)
		v.comma = !last
		res.Members = append(res.Members, v)
	}
	return res, nil
}

// memberPath follows "a.b.c" from ct (anonymous structs and unions are
// looked through); the offset is from the start of ct. last says the
// member is the last of the struct holding it (crash prints its line
// from the whole struct's, so without the comma).
func memberPath(ct *symbols.CType, path string) (acc symbols.CMember, last bool, err error) {
	cur := ct
	for i, part := range strings.Split(path, ".") {
		m, isLast, ok := memberIn(cur, part, 0)
		if !ok {
			if r := cur.Resolved(); r == nil || r.Kind != symbols.TypeStruct && r.Kind != symbols.TypeUnion {
				return acc, false, fmt.Errorf("%s: %s is %s, not a struct or union", path, strings.Join(strings.Split(path, ".")[:i], "."), symbols.Declare(cur, ""))
			}
			return acc, false, fmt.Errorf("%w: %s has no member %s", symbols.ErrNoType, symbols.Declare(cur, ""), part)
		}
		acc.BitOffset += m.BitOffset
		acc.BitSize, acc.Type, acc.Name = m.BitSize, m.Type, m.Name
		cur, last = m.Type, isLast
	}
	return acc, last, nil
}

// memberIn finds name among ct's members or those of its anonymous
// structs and unions; last: it is the last member of the one holding it.
func memberIn(ct *symbols.CType, name string, depth int) (symbols.CMember, bool, bool) {
	r := ct.Resolved()
	if r == nil || r.Kind != symbols.TypeStruct && r.Kind != symbols.TypeUnion || depth > 64 {
		return symbols.CMember{}, false, false
	}
	for i, m := range r.Members {
		if m.Name == name {
			return m, i == len(r.Members)-1, true
		}
		if m.Name == "" {
			if in, last, ok := memberIn(m.Type, name, depth+1); ok {
				in.BitOffset += m.BitOffset
				return in, last, true
			}
		}
	}
	return symbols.CMember{}, false, false
}

// readStruct reads n bytes at addr+off, or says which bytes could not be.
func (t *Triage) readStruct(what string, addr, off, n uint64) ([]byte, error) {
	buf := make([]byte, n)
	if err := t.K.Read(buf, addr+off); err != nil {
		return nil, fmt.Errorf("struct: %s at 0x%x: cannot read %d bytes at 0x%x: %w", what, addr, n, addr+off, err)
	}
	return buf, nil
}

// valuePrinter makes values out of buf, which holds the bytes from bit
// base of the outermost struct (at addr) on.
type valuePrinter struct {
	t     *Triage
	addr  uint64
	buf   []byte
	base  uint64
	count int // values made, against maxStructValues
}

// pointer writes a pointer as gdb's print symbol does: a pointer into a
// kernel function or variable names it (not by an unsized data label).
func (p *valuePrinter) pointer(u uint64) string {
	s := fmt.Sprintf("0x%x", u)
	k := p.t.K
	if u < kernelHalf || k.Vmlinux != nil && k.Vmlinux.UnsizedData(u-k.KASLR) {
		return s
	}
	if n := crashSymbol(k.SymbolName(u)); n != "" {
		s += " <" + n + ">"
	}
	return s
}

// cString is gdb's print of a char pointer: the address, then the
// string there up to its NUL (at most maxArrayShown characters), or
// why it cannot be read.
func (p *valuePrinter) cString(a uint64) string {
	var s []byte
	var c [1]byte
	for len(s) < maxArrayShown {
		if err := p.t.K.Read(c[:], a+uint64(len(s))); err != nil {
			if len(s) == 0 {
				return fmt.Sprintf("%s <error: Cannot access memory at address 0x%x>", p.pointer(a), a)
			}
			break
		}
		if c[0] == 0 {
			return fmt.Sprintf("%s %s", p.pointer(a), gdbString(append(s, 0)))
		}
		s = append(s, c[0])
	}
	return fmt.Sprintf("%s %s...", p.pointer(a), gdbString(s))
}

// bytesAt returns the n bytes at bit offset bits, or false past what was read.
func (p *valuePrinter) bytesAt(bits, n uint64) ([]byte, bool) {
	if bits < p.base || (bits-p.base)%8 != 0 {
		return nil, false
	}
	off := (bits - p.base) / 8
	if off > uint64(len(p.buf)) || n > uint64(len(p.buf))-off {
		return nil, false
	}
	return p.buf[off : off+n], true
}

func (p *valuePrinter) value(name string, ct *symbols.CType, bits, bitSize uint64, depth int) StructValue {
	v := StructValue{Name: name, Type: symbols.Declare(ct, "")}
	r := ct.Resolved()
	if depth > 64 || r == nil {
		v.Value = "<void>"
		return v
	}
	if p.count++; p.count > maxStructValues {
		v.Value = "..."
		return v
	}
	switch r.Kind {
	case symbols.TypeStruct, symbols.TypeUnion:
		if r.Incomplete {
			v.Value = "<incomplete type>"
			return v
		}
		for _, m := range r.Members {
			v.Members = append(v.Members, p.value(m.Name, m.Type, bits+m.BitOffset, m.BitSize, depth+1))
		}
		if v.Members == nil {
			v.Members = []StructValue{}
		}
		return v
	case symbols.TypeArray:
		es := r.Elem.ByteSize()
		if er := r.Elem.Resolved(); er != nil && er.Kind == symbols.TypeChar {
			if r.Len == 0 {
				// A flexible char array: gdb prints its address and
				// the string there.
				v.Value = p.cString(p.addr + bits/8)
				return v
			}
			b, ok := p.bytesAt(bits, r.Len)
			if !ok {
				v.Value = "<not read>"
				return v
			}
			v.Value = gdbString(b)
			return v
		}
		if r.Len == 0 {
			// A flexible array: gdb prints its address.
			v.Value = p.pointer(p.addr + bits/8)
			return v
		}
		v.array = true
		n := r.Len
		if n > maxArrayShown {
			v.Elided, n = n-maxArrayShown, maxArrayShown
		}
		for i := uint64(0); i < n; i++ {
			if _, ok := p.bytesAt(bits+i*es*8, es); !ok {
				v.Elided += n - i
				break
			}
			v.Members = append(v.Members, p.value(fmt.Sprintf("[%d]", i), r.Elem, bits+i*es*8, 0, depth+1))
		}
		if v.Members == nil && v.Elided == 0 {
			v.Members = []StructValue{}
		}
		return v
	}
	v.Value = p.scalar(r, bits, bitSize)
	return v
}

// scalar formats an int, bool, char, enum, float or pointer as gdb does.
func (p *valuePrinter) scalar(r *symbols.CType, bits, bitSize uint64) string {
	size := r.Size
	if r.Kind == symbols.TypePointer && size == 0 {
		size = 8
	}
	var u uint64
	if bitSize > 0 {
		lo := bits / 8 * 8
		nbytes := (bits + bitSize - lo + 7) / 8
		b, ok := p.bytesAt(lo, nbytes)
		if !ok || nbytes > 9 || bitSize > 64 {
			return "<not read>"
		}
		var wide [16]byte
		copy(wide[:], b)
		lo64 := binary.LittleEndian.Uint64(wide[:])
		hi64 := binary.LittleEndian.Uint64(wide[8:])
		sh := bits - lo
		u = lo64 >> sh
		if sh > 0 {
			u |= hi64 << (64 - sh)
		}
		if bitSize < 64 {
			u &= 1<<bitSize - 1
			if r.Signed && u&(1<<(bitSize-1)) != 0 {
				u |= ^uint64(0) << bitSize
			}
		}
	} else {
		b, ok := p.bytesAt(bits, size)
		if !ok {
			return "<not read>"
		}
		switch size {
		case 1, 2, 4, 8:
			var wide [8]byte
			copy(wide[:], b)
			u = binary.LittleEndian.Uint64(wide[:])
			if r.Signed && size < 8 && u&(1<<(size*8-1)) != 0 {
				u |= ^uint64(0) << (size * 8)
			}
		default:
			// __int128, long double and the like: the bytes, most
			// significant first.
			var s strings.Builder
			s.WriteString("0x")
			for i := len(b) - 1; i >= 0; i-- {
				fmt.Fprintf(&s, "%02x", b[i])
			}
			return s.String()
		}
	}
	switch r.Kind {
	case symbols.TypeBool:
		switch u {
		case 0:
			return "false"
		case 1:
			return "true"
		}
		return strconv.FormatUint(u, 10)
	case symbols.TypeChar:
		return fmt.Sprintf("%d '%s'", charValue(u, r.Signed), gdbChar(byte(u), '\''))
	case symbols.TypeEnum:
		for _, e := range r.Enumerators {
			if uint64(e.Value) == u || size < 8 && uint64(e.Value)&(1<<(size*8)-1) == u&(1<<(size*8)-1) {
				return e.Name
			}
		}
		if r.Signed {
			return strconv.FormatInt(int64(u), 10)
		}
		return strconv.FormatUint(u, 10)
	case symbols.TypeFloat:
		switch size {
		case 4:
			return strconv.FormatFloat(float64(math.Float32frombits(uint32(u))), 'g', -1, 32)
		case 8:
			return strconv.FormatFloat(math.Float64frombits(u), 'g', -1, 64)
		}
	case symbols.TypePointer:
		return p.pointer(u)
	}
	if r.Signed {
		return strconv.FormatInt(int64(u), 10)
	}
	return strconv.FormatUint(u, 10)
}

func charValue(u uint64, signed bool) int64 {
	if signed {
		return int64(int8(u))
	}
	return int64(uint8(u))
}

// gdbChar escapes c as gdb does inside quotes q.
func gdbChar(c byte, q byte) string {
	switch c {
	case '\\':
		return `\\`
	case q:
		return `\` + string(q)
	case '\a':
		return `\a`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	case '\v':
		return `\v`
	case 033:
		return `\033`
	}
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf(`\%03o`, c)
	}
	return string(c)
}

// gdbString writes a char array as crash (gdb, print repeats off)
// prints it: whole, one trailing NUL dropped, non-printing characters
// escaped; past maxArrayShown characters "...".
func gdbString(b []byte) string {
	if len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	var s strings.Builder
	s.WriteByte('"')
	// gdb's element limit counts characters: a multi-byte one is one.
	shown := 0
	i := 0
	for i < len(b) && shown < maxArrayShown {
		shown++
		// A printable multi-byte UTF-8 character is printed as itself,
		// as gdb (and crash through it) does on a UTF-8 host.
		if b[i] >= 0x80 {
			if r, n := utf8.DecodeRune(b[i:]); r != utf8.RuneError && n > 1 && unicode.IsPrint(r) {
				s.Write(b[i : i+n])
				i += n
				continue
			}
		}
		s.WriteString(gdbChar(b[i], '"'))
		i++
	}
	s.WriteByte('"')
	if i < len(b) {
		s.WriteString("...")
	}
	return s.String()
}

func (r *StructResult) text(w io.Writer) error {
	var b strings.Builder
	if r.Value != nil {
		fmt.Fprintf(&b, "%s ", r.header)
		writeValue(&b, *r.Value, 0)
		b.WriteString("\n")
	}
	for _, m := range r.Members {
		b.WriteString("  ")
		if m.Name != "" {
			b.WriteString(m.Name + " = ")
		}
		writeValue(&b, m, 2)
		if m.comma {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeValue writes v's value (not its name) as gdb's print pretty
// does; indent is the column of the line it starts on.
func writeValue(b *strings.Builder, v StructValue, indent int) {
	switch {
	case v.array:
		writeArray(b, v, indent)
	case v.Members != nil:
		if len(v.Members) == 0 {
			b.WriteString("{<No data fields>}")
			return
		}
		b.WriteString("{\n")
		pad := strings.Repeat(" ", indent+2)
		for i, m := range v.Members {
			b.WriteString(pad)
			if m.Name != "" {
				b.WriteString(m.Name + " = ")
			}
			writeValue(b, m, indent+2)
			if i < len(v.Members)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(strings.Repeat(" ", indent) + "}")
	default:
		b.WriteString(v.Value)
	}
}

// writeArray writes {a, b, c}; struct elements as gdb does, {{ ... },
// { ... }} with their members two columns further in.
func writeArray(b *strings.Builder, v StructValue, indent int) {
	b.WriteString("{")
	for i, e := range v.Members {
		if i > 0 {
			b.WriteString(", ")
		}
		writeValue(b, e, indent+2)
	}
	if v.Elided > 0 {
		b.WriteString("...")
	}
	b.WriteString("}")
}

// errNoName is whatis's answer for a name BTF does not have; dwarfErr
// says why the vmlinux given did not answer, if one was.
func errNoName(name, source string, err, dwarfErr error) error {
	if !errors.Is(err, symbols.ErrNoType) {
		return fmt.Errorf("whatis: %s: %w", name, err)
	}
	if dwarfErr != nil {
		return fmt.Errorf("whatis: %s: %s has no such name, and the vmlinux's DWARF, which has more, cannot be read (%v)", name, source, dwarfErr)
	}
	return fmt.Errorf("whatis: %s: %s has no such name (the vmlinux's DWARF has more: give the vmlinux)", name, source)
}
