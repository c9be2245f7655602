package triage

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
)

// maxRdWords bounds one rd: 64 KiB of memory.
const maxRdWords = 8192

// RdOptions is `rd [-s] [-p | -u PID] ADDR|SYMBOL [COUNT]`.
type RdOptions struct {
	Addr     string // hex address or symbol name
	Count    int    // quad words (1 if 0)
	Symbolic bool   // words that point into kernel symbols as symbol+offset
	Physical bool   // ADDR is a physical address
	PID      int    // ADDR is a user address of this task (0: kernel/current)
}

// RdLine is one line of rd: two quad words at an address.
type RdLine struct {
	Addr  string      `json:"address"`
	Words []StackWord `json:"words"`
	ASCII string      `json:"ascii,omitempty"`
}

// RdResult is `rd`.
type RdResult struct {
	Lines    []RdLine `json:"lines"`
	symbolic bool
	physical bool
}

// parseAddr reads a hex address (with or without 0x) or a symbol name.
func (t *Triage) parseAddr(s string) (uint64, error) {
	h := strings.TrimPrefix(strings.ToLower(s), "0x")
	if v, err := strconv.ParseUint(h, 16, 64); err == nil {
		return v, nil
	}
	a, err := t.K.Symbol(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a hex address nor a kernel symbol", s)
	}
	return a, nil
}

// Rd reads quad words of kernel, user or physical memory.
func (t *Triage) Rd(o RdOptions) (*RdResult, error) {
	addr, err := t.parseAddr(o.Addr)
	if err != nil {
		return nil, err
	}
	n := o.Count
	if n <= 0 {
		n = 1
	}
	if n > maxRdWords {
		return nil, fmt.Errorf("rd: %d words asked, at most %d", n, maxRdWords)
	}
	var task *kernel.Task
	if o.PID != 0 {
		for _, tk := range t.K.Tasks {
			if int(tk.PID) == o.PID && tk.MM != 0 {
				task = tk
				break
			}
		}
		if task == nil {
			return nil, fmt.Errorf("rd -u: no user task with pid %d", o.PID)
		}
	}
	read := func(p []byte, a uint64) error {
		switch {
		case o.Physical:
			_, err := t.K.Dump.ReadPhys(p, a)
			return err
		case task != nil:
			_, err := t.K.ReadMemory(task, a, p)
			return err
		}
		return t.K.Read(p, a)
	}
	res := &RdResult{symbolic: o.Symbolic, physical: o.Physical}
	for i := 0; i < n; i += 2 {
		line := RdLine{Addr: fmt.Sprintf("%x", addr+uint64(i)*8)}
		var ascii strings.Builder
		for j := i; j < min(i+2, n); j++ {
			a := addr + uint64(j)*8
			w := StackWord{Addr: fmt.Sprintf("%016x", a)}
			var b [8]byte
			if err := read(b[:], a); err != nil {
				if len(res.Lines) == 0 && j == 0 {
					return nil, fmt.Errorf("rd: %#x: %w", a, err)
				}
				w.Value, w.Unreadable = "????????????????", err.Error()
				ascii.WriteString("????????")
			} else {
				v := binary.LittleEndian.Uint64(b[:])
				w.Value = fmt.Sprintf("%016x", v)
				if o.Symbolic && !o.Physical {
					w.Symbol = crashSymbol(t.K.SymbolName(v))
				}
				for _, c := range b {
					if c >= 0x20 && c < 0x7f {
						ascii.WriteByte(c)
					} else {
						ascii.WriteByte('.')
					}
				}
			}
			line.Words = append(line.Words, w)
		}
		if !o.Symbolic {
			line.ASCII = ascii.String()
		}
		res.Lines = append(res.Lines, line)
	}
	return res, nil
}

func (r *RdResult) text(w io.Writer) error {
	for _, l := range r.Lines {
		s := fmt.Sprintf("%16s: ", l.Addr)
		for _, x := range l.Words {
			v := x.Value
			if x.Symbol != "" {
				v = fmt.Sprintf("%-16s", x.Symbol)
			}
			s += " " + v
		}
		if l.ASCII != "" {
			s += strings.Repeat(" ", 17*(2-len(l.Words))) + "   " + l.ASCII
		}
		fmt.Fprintln(w, strings.TrimRight(s, " "))
	}
	return nil
}

// SymEntry is one answer of `sym`.
type SymEntry struct {
	Addr   string `json:"address"`
	Type   string `json:"type,omitempty"` // nm's letter: T, D, B, R...
	Symbol string `json:"symbol"`
	// File and Line: where a text address is in the source (vmlinux
	// DWARF), the innermost line as crash shows it.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

// SymResult is `sym`.
type SymResult []SymEntry

// Sym names an address, or gives a symbol's address, with the symbol's
// type letter and, in text, its source line.
func (t *Triage) Sym(arg string) (SymResult, error) {
	e := SymEntry{}
	var a uint64
	base := arg
	if sa, err := t.K.Symbol(arg); err == nil {
		a, e.Symbol = sa, arg
	} else {
		if a, err = t.parseAddr(arg); err != nil {
			return nil, err
		}
		e.Symbol = crashSymbol(t.K.SymbolName(a))
		if e.Symbol == "" {
			return nil, fmt.Errorf("sym: no kernel or module symbol at %#x", a)
		}
		base, _, _ = strings.Cut(e.Symbol, "+")
	}
	e.Addr = fmt.Sprintf("%016x", a)
	if c, ok := t.K.SymbolType(base); ok {
		e.Type = string(c)
	}
	if e.Type == "T" || e.Type == "t" || e.Type == "W" {
		if ls, err := t.K.SourceLines(a); err == nil && len(ls) > 0 {
			e.File, e.Line = ls[0].File, ls[0].Line
		}
	}
	return SymResult{e}, nil
}

func (r SymResult) text(w io.Writer) error {
	for _, e := range r {
		addr := strings.TrimLeft(e.Addr, "0")
		if len(addr) < 16 && len(e.Addr) == 16 && addr == "" {
			addr = "0"
		}
		fmt.Fprintf(w, "%s ", addr)
		if e.Type != "" {
			fmt.Fprintf(w, "(%s) ", e.Type)
		}
		fmt.Fprint(w, e.Symbol)
		if e.File != "" {
			fmt.Fprintf(w, " %s: %d", e.File, e.Line)
		}
		fmt.Fprintln(w)
	}
	return nil
}
