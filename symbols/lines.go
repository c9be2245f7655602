package symbols

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// ErrNoLineInfo says the vmlinux has no DWARF line information for an
// address.
var ErrNoLineInfo = errors.New("no line information")

// SourceLine is one source position of an address: the innermost first
// (where the code is), then, for code inlined into a caller, the call
// site in each caller outward.
type SourceLine struct {
	Function string `json:"function,omitempty"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	// Inlined marks a position inside an inlined function; the next
	// entry is the place it was inlined into.
	Inlined bool `json:"inlined,omitempty"`
}

func (l SourceLine) String() string { return fmt.Sprintf("%s: %d", l.File, l.Line) }

type lineData struct {
	once  sync.Once
	d     *dwarf.Data
	err   error
	units []unitRange // every unit's address ranges, sorted
	mu    sync.Mutex  // dwarf.Data's readers are not safe for concurrent use
}

// unitRange is one address range of a compile unit. debug/dwarf's own
// SeekPC misses code a unit has far from its main range (gcc's .cold
// parts in .text.unlikely), so the units' ranges are indexed here.
type unitRange struct {
	low, high uint64
	off       dwarf.Offset
}

func (l *lineData) index() {
	r := l.d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
			if rs, err := l.d.Ranges(e); err == nil {
				for _, x := range rs {
					if x[1] > x[0] {
						l.units = append(l.units, unitRange{x[0], x[1], e.Offset})
					}
				}
			}
		}
		r.SkipChildren()
	}
	sort.Slice(l.units, func(i, j int) bool { return l.units[i].low < l.units[j].low })
}

// unitAt returns the compile unit whose ranges hold pc, with r positioned
// at its children.
func (l *lineData) unitAt(r *dwarf.Reader, pc uint64) (*dwarf.Entry, error) {
	// Ranges can nest (a unit with one range spanning others'): the
	// narrowest range holding pc wins. A few thousand ranges: a scan.
	best := -1
	for i, u := range l.units {
		if u.low > pc {
			break
		}
		if pc < u.high && (best < 0 || u.high-u.low < l.units[best].high-l.units[best].low) {
			best = i
		}
	}
	if best >= 0 {
		r.Seek(l.units[best].off)
		return r.Next()
	}
	return nil, dwarf.ErrUnknownPC
}

// dwarfData loads the vmlinux's DWARF for line lookups (all of
// .debug_info and .debug_line: hundreds of MB for a distribution kernel,
// read once, only when lines are asked for).
func (v *Vmlinux) dwarfData() (*dwarf.Data, error) {
	v.lines.once.Do(func() {
		for _, name := range []string{".debug_info", ".debug_line", ".debug_abbrev"} {
			if v.elf.Section(name) == nil {
				v.lines.err = fmt.Errorf("%s: %w: no %s section", v.path, ErrNoLineInfo, name)
				return
			}
		}
		// Every debug section debug/dwarf will read (decompressed, if
		// compressed), bounded as any other section read from the file.
		for _, s := range v.elf.Sections {
			if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
				if v.lines.err = v.checkSection(s, maxSectionBytes); v.lines.err != nil {
					return
				}
			}
		}
		v.lines.d, v.lines.err = v.elf.DWARF()
		if v.lines.err != nil {
			v.lines.err = fmt.Errorf("%s: DWARF: %w", v.path, v.lines.err)
			return
		}
		v.lines.index()
	})
	return v.lines.d, v.lines.err
}

// SourceLines returns the source positions of a link-time address,
// innermost first, with one entry per level of inlining.
func (v *Vmlinux) SourceLines(pc uint64) ([]SourceLine, error) {
	d, err := v.dwarfData()
	if err != nil {
		return nil, err
	}
	v.lines.mu.Lock()
	defer v.lines.mu.Unlock()
	r := d.Reader()
	cu, err := v.lines.unitAt(r, pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w for %#x: %v", v.path, ErrNoLineInfo, pc, err)
	}
	if cu == nil {
		return nil, fmt.Errorf("%s: %w for %#x: no compilation unit covers it", v.path, ErrNoLineInfo, pc)
	}
	lr, err := d.LineReader(cu)
	if err != nil || lr == nil {
		return nil, fmt.Errorf("%s: %w for %#x: unit has no line program", v.path, ErrNoLineInfo, pc)
	}
	le, ok := lineAt(lr, pc)
	if !ok {
		return nil, fmt.Errorf("%s: %w for %#x in unit %v", v.path, ErrNoLineInfo, pc, cu.Val(dwarf.AttrName))
	}
	files := lr.Files()
	chain := inlineChain(d, r, pc)
	name := func(e *dwarf.Entry) string { return entryName(d, e, 0) }
	out := []SourceLine{{File: le.File.Name, Line: le.Line}}
	if len(chain) > 0 {
		out[0].Function = name(chain[len(chain)-1])
	}
	// chain[0] is the subprogram, chain[i] for i>0 an inlined
	// subroutine inside chain[i-1], called from chain[i-1]'s code at
	// chain[i]'s DW_AT_call_file:call_line.
	for i := len(chain) - 1; i > 0; i-- {
		out[len(out)-1].Inlined = true
		sl := SourceLine{Function: name(chain[i-1])}
		if f, ok := chain[i].Val(dwarf.AttrCallFile).(int64); ok && f >= 0 && int(f) < len(files) && files[f] != nil {
			sl.File = files[f].Name
		}
		if l, ok := chain[i].Val(dwarf.AttrCallLine).(int64); ok {
			sl.Line = int(l)
		}
		out = append(out, sl)
	}
	return out, nil
}

// lineAt finds the line-table row for pc: in the sequence whose range
// holds it, the rows at the highest address at or below pc, of which the
// last statement row (is_stmt) wins, else the last row, as gdb reads the
// table. (debug/dwarf's LineReader.SeekPC misses rows of sequences placed
// far from the unit's first one, such as gcc's .cold code.)
func lineAt(lr *dwarf.LineReader, pc uint64) (dwarf.LineEntry, bool) {
	var best dwarf.LineEntry
	found := false
	// The rows at one address, the one at hand.
	var group []dwarf.LineEntry
	pick := func() dwarf.LineEntry {
		for i := len(group) - 1; i >= 0; i-- {
			if group[i].IsStmt {
				return group[i]
			}
		}
		return group[len(group)-1]
	}
	for {
		var e dwarf.LineEntry
		if err := lr.Next(&e); err != nil {
			break
		}
		if len(group) > 0 && e.Address != group[0].Address {
			if group[0].Address <= pc && pc < e.Address && (!found || group[0].Address >= best.Address) {
				best, found = pick(), true
			}
			group = group[:0]
		}
		if e.EndSequence {
			group = group[:0]
			continue
		}
		group = append(group, e)
	}
	return best, found
}

// maxInlineDepth bounds the descent into nested inlined code.
const maxInlineDepth = 64

// inlineChain finds the subprogram holding pc among the children of the
// unit r is positioned in, then the inlined subroutines holding pc
// inside it, outermost first.
func inlineChain(d *dwarf.Data, r *dwarf.Reader, pc uint64) []*dwarf.Entry {
	var chain []*dwarf.Entry
	// Scan one level of children; descend into the one holding pc.
	for depth := 0; depth < maxInlineDepth; depth++ {
		var found *dwarf.Entry
		for {
			e, err := r.Next()
			if err != nil || e == nil || e.Tag == 0 {
				break
			}
			switch e.Tag {
			case dwarf.TagSubprogram, dwarf.TagInlinedSubroutine, dwarf.TagLexDwarfBlock:
				if covers(d, e, pc) {
					found = e
				}
			}
			if found != nil {
				break
			}
			if e.Children {
				r.SkipChildren()
			}
		}
		if found == nil {
			return chain
		}
		if found.Tag != dwarf.TagLexDwarfBlock {
			chain = append(chain, found)
		}
		if !found.Children {
			return chain
		}
	}
	return chain
}

func covers(d *dwarf.Data, e *dwarf.Entry, pc uint64) bool {
	rs, err := d.Ranges(e)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

// entryName is a DIE's name, through DW_AT_abstract_origin or
// DW_AT_specification when it has none of its own.
func entryName(d *dwarf.Data, e *dwarf.Entry, depth int) string {
	if n, ok := e.Val(dwarf.AttrName).(string); ok {
		return n
	}
	if depth > 4 {
		return ""
	}
	for _, a := range []dwarf.Attr{dwarf.AttrAbstractOrigin, dwarf.AttrSpecification} {
		off, ok := e.Val(a).(dwarf.Offset)
		if !ok {
			continue
		}
		r := d.Reader()
		r.Seek(off)
		if o, err := r.Next(); err == nil && o != nil {
			return entryName(d, o, depth+1)
		}
	}
	return ""
}
