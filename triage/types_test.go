package triage

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// recorder is a type source that notes every question it is asked.
type recorder struct {
	symbols.Types
	mu sync.Mutex
	qs map[typeQuery]bool
}

type typeQuery struct{ method, a, b string }

func (r *recorder) note(m, a, b string) {
	r.mu.Lock()
	r.qs[typeQuery{m, a, b}] = true
	r.mu.Unlock()
}
func (r *recorder) Offset(s, p string) (uint64, error) {
	r.note("Offset", s, p)
	return r.Types.Offset(s, p)
}
func (r *recorder) Sizeof(s string) (uint64, error) {
	r.note("Sizeof", s, "")
	return r.Types.Sizeof(s)
}
func (r *recorder) ArrayLen(s, p string) (uint64, error) {
	r.note("ArrayLen", s, p)
	return r.Types.ArrayLen(s, p)
}
func (r *recorder) Enum(n string) (map[string]int64, error) {
	r.note("Enum", n, "")
	return r.Types.Enum(n)
}
func (r *recorder) EnumValue(n string) (int64, error) {
	r.note("EnumValue", n, "")
	return r.Types.EnumValue(n)
}

// ask puts q to a source; the answer is printed so two can be compared.
func ask(t symbols.Types, q typeQuery) (string, bool) {
	var v any
	var err error
	switch q.method {
	case "Offset":
		v, err = t.Offset(q.a, q.b)
	case "Sizeof":
		v, err = t.Sizeof(q.a)
	case "ArrayLen":
		v, err = t.ArrayLen(q.a, q.b)
	case "Enum":
		var m map[string]int64
		m, err = t.Enum(q.a)
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s := ""
		for _, k := range keys {
			s += fmt.Sprintf("%s=%d ", k, m[k])
		}
		v = s
	case "EnumValue":
		v, err = t.EnumValue(q.a)
	}
	if err != nil {
		return "error", false
	}
	return fmt.Sprint(v), true
}

// TestTypesAgree records every type question the model asks while it
// loads and runs sys, ps, bt -a, log, kmem, mod, vm and files on each fixture (BTF
// answering), then asks the vmlinux's DWARF the same questions: every
// answer, found or not found, must be the same.
func TestTypesAgree(t *testing.T) {
	forEachSet(t, func(t *testing.T, set fixtures.Set) {
		vmlinux := set.Path(t, "kernel", "vmlinux")
		v, err := symbols.Open(vmlinux)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		btf, err := v.BTF()
		if err != nil {
			t.Fatal(err)
		}
		dw, err := v.DWARF()
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{Types: btf, qs: map[typeQuery]bool{}}
		for _, dump := range []string{"oom/vmcore.lzo", "modcrash/vmcore.lzo"} {
			path := set.Path(t, dump)
			d, err := vmcore.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			k, err := kernel.LoadWithTypes(d, v, rec)
			if err != nil {
				t.Fatal(err)
			}
			tr := &Triage{K: k, Vmlinux: vmlinux, Dumps: []string{path}}
			for _, cmd := range [][]string{{"sys"}, {"ps"}, {"bt", "-a"}, {"log"}, {"kmem"}, {"mod"}, {"vm", "1"}, {"files", "1"}} {
				// vm and files ask their questions before reading: a page
				// the filtered dump lacks (6.12) fails the read, not them.
				if err := tr.Run(cmd, io.Discard, false); err != nil && !(cmd[0] == "vm" || cmd[0] == "files") {
					t.Errorf("%s %v: %v", dump, cmd, err)
				}
			}
			d.Close()
		}
		methods := map[string]int{}
		found := 0
		for q := range rec.qs {
			methods[q.method]++
			want, ok := ask(btf, q)
			if ok {
				found++
			}
			if got, _ := ask(dw, q); got != want {
				t.Errorf("%s(%s, %s): DWARF says %s, BTF %s", q.method, q.a, q.b, got, want)
			}
		}
		// The model asks every kind of question; an empty record would
		// make the comparison vacuous.
		for _, m := range []string{"Offset", "Sizeof", "ArrayLen", "Enum", "EnumValue"} {
			if methods[m] == 0 {
				t.Errorf("the model asked no %s question", m)
			}
		}
		t.Logf("%d questions (%d answered by BTF), by kind %v", len(rec.qs), found, methods)
	})
}
