package triage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// runJSON runs a command with --json and decodes its output into v.
func runJSON(t *testing.T, tr *Triage, v any, args ...string) {
	t.Helper()
	var b bytes.Buffer
	if err := tr.Run(args, &b, true); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if err := json.Unmarshal(b.Bytes(), v); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, b.String())
	}
}

func panicTask(t *testing.T, k *kernel.Kernel) *kernel.Task {
	t.Helper()
	for _, task := range k.Tasks {
		if task.Panic {
			return task
		}
	}
	t.Fatal("no panicking task")
	return nil
}

// commValue is what gdb prints for a char[16] holding comm: the name,
// then a NUL and what is left of an older name, if anything.
func commValue(comm string) *regexp.Regexp {
	return regexp.MustCompile(`^"` + regexp.QuoteMeta(comm) + `(\\000[^"]*)?"(, '\\000' <repeats \d+ times>)?$`)
}

// struct reads the dump's values through the type model, from every
// type source (the vmlinux's BTF, its DWARF on 4.18, the dump's BTF):
// the panicking task's comm and pid are the model's, init_task.tasks'
// next and prev are the words at its address, and the whole task_struct
// prints as crash's layout with those values in it, the same twice.
func TestStructValues(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		trs := map[string]*Triage{"vmlinux": openWith(t, set, true, "oom/vmcore.lzo")}
		if set.Name != fixtures.Series418 {
			trs["dump BTF"] = openWith(t, set, false, "oom/vmcore.lzo")
		}
		for _, src := range []string{"vmlinux", "dump BTF"} {
			tr := trs[src]
			if tr == nil {
				continue
			}
			t.Run(src, func(t *testing.T) { testStructValues(t, tr) })
		}
	})
}

func testStructValues(t *testing.T, tr *Triage) {
	k := tr.K
	pt := panicTask(t, k)
	addr := fmt.Sprintf("%x", pt.Addr)

	var r StructResult
	runJSON(t, tr, &r, "struct", "task_struct.comm,pid", addr)
	if len(r.Members) != 2 || r.Members[0].Name != "comm" || r.Members[1].Name != "pid" {
		t.Fatalf("task_struct.comm,pid: %+v", r.Members)
	}
	if pt.CommSource == "" && !commValue(pt.Comm).MatchString(r.Members[0].Value) {
		t.Errorf("comm = %s, the model's comm is %q", r.Members[0].Value, pt.Comm)
	}
	if want := fmt.Sprint(pt.PID); r.Members[1].Value != want {
		t.Errorf("pid = %s, want %s", r.Members[1].Value, want)
	}
	if got, want := runText(t, tr, "struct", "task_struct.pid", addr), fmt.Sprintf("  pid = %d,\n", pt.PID); got != want {
		t.Errorf("struct task_struct.pid: %q, want %q", got, want)
	}

	// init_task.tasks: a list_head whose words are next and prev.
	init, err := k.Symbol("init_task")
	if err != nil {
		t.Fatal(err)
	}
	off, err := k.Types.Offset("task_struct", "tasks")
	if err != nil {
		t.Fatal(err)
	}
	head := init + off
	next, err := k.ReadU64(head)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := k.ReadU64(head + 8)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("struct list_head {\n  next = 0x%x,\n  prev = 0x%x\n}\n", next, prev)
	if got := runText(t, tr, "struct", "list_head", fmt.Sprintf("%x", head)); got != want {
		t.Errorf("struct list_head %x:\n%s\nwant\n%s", head, got, want)
	}
	// A member path through a struct: init_task.tasks.next.
	if got, want := runText(t, tr, "struct", "task_struct.tasks.next", "init_task"), fmt.Sprintf("  tasks.next = 0x%x,\n", next); got != want {
		t.Errorf("struct task_struct.tasks.next init_task: %q, want %q", got, want)
	}

	// The whole task_struct.
	full := runText(t, tr, "struct", "task_struct", addr)
	if !strings.HasPrefix(full, "struct task_struct {\n") || !strings.HasSuffix(full, "\n}\n") {
		t.Errorf("struct task_struct: not crash's frame:\n%.300s", full)
	}
	if !strings.Contains(full, fmt.Sprintf("\n  pid = %d,\n", pt.PID)) {
		t.Errorf("struct task_struct: no line pid = %d", pt.PID)
	}
	if m := regexp.MustCompile(`\n  comm = (.*),\n`).FindStringSubmatch(full); m == nil || pt.CommSource == "" && !commValue(pt.Comm).MatchString(m[1]) {
		t.Errorf("struct task_struct: comm line %q, model's comm %q", m, pt.Comm)
	}
	if again := runText(t, tr, "struct", "task_struct", addr); again != full {
		t.Error("struct task_struct: a second run printed something else")
	}
	// A function pointer in it names its function, as crash does.
	if !regexp.MustCompile(`= 0xffffffff[0-9a-f]+ <[A-Za-z_][A-Za-z0-9_.]*(\+\d+)?>`).MatchString(full) {
		t.Error("struct task_struct: no function pointer named")
	}
	t.Logf("struct task_struct %s: %d lines", addr, strings.Count(full, "\n"))

	// A struct larger than the bound (pglist_data is 170 KB on 6.x):
	// its first 64 KiB, the rest not read, said so.
	if size, err := k.Types.Sizeof("pglist_data"); err == nil && size > maxStructBytes {
		nd, err := k.Symbol("node_data")
		if err != nil {
			t.Fatal(err)
		}
		node0, err := k.ReadU64(nd)
		if err != nil {
			t.Fatal(err)
		}
		out := runText(t, tr, "struct", "pglist_data", fmt.Sprintf("%x", node0))
		if !strings.Contains(out, fmt.Sprintf("note: struct pglist_data is %d bytes: only its first %d are read\n", size, maxStructBytes)) ||
			!strings.Contains(out, " = <not read>") || !strings.HasPrefix(out, "struct pglist_data {\n  node_zones = {{\n") || len(out) > 4*maxStructBytes {
			t.Errorf("struct pglist_data (%d bytes): %d bytes of output:\n%.300s\n...\n%s", size, len(out), out, out[max(0, len(out)-300):])
		}
	}

	// A per-CPU variable on every CPU: each run queue's cpu is its CPU.
	var rqs []StructResult
	runJSON(t, tr, &rqs, "struct", "rq.cpu", "runqueues:a")
	if len(rqs) != len(k.CPUs) {
		t.Fatalf("struct rq.cpu runqueues:a: %d copies, %d CPUs", len(rqs), len(k.CPUs))
	}
	for i, r := range rqs {
		if r.CPU == nil || *r.CPU != i || len(r.Members) != 1 || r.Members[0].Value != fmt.Sprint(i) {
			t.Errorf("struct rq.cpu runqueues:a: copy %d: %+v", i, r)
		}
		if a, err := k.PerCPU("runqueues", i); err != nil || r.Address != fmt.Sprintf("%x", a) {
			t.Errorf("runqueues on CPU %d at %s, want %x (%v)", i, r.Address, a, err)
		}
	}
	if err := tr.Run([]string{"struct", "rq.cpu", fmt.Sprintf("runqueues:%d", len(k.CPUs))}, &bytes.Buffer{}, false); err == nil {
		t.Error("struct rq.cpu on a CPU the dump does not have: no error")
	}

	// Unreadable memory: one line naming the address.
	err = tr.Run([]string{"struct", "list_head", "10"}, &bytes.Buffer{}, false)
	if err == nil || !strings.Contains(err.Error(), "0x10") || strings.Contains(err.Error(), "\n") {
		t.Errorf("struct list_head 10: %v", err)
	}
	for _, bad := range [][]string{{"struct", "no_such_struct_here", addr}, {"struct", "task_struct.no_such_member", addr}} {
		if err := tr.Run(bad, &bytes.Buffer{}, false); err == nil || !strings.Contains(err.Error(), "no_such_") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

// whatis from the dump's BTF (no vmlinux) answers for a struct, a
// function and a per-CPU variable exactly what whatis from the vmlinux's
// DWARF answers on the same kernel: text, members and their offsets,
// return and parameter types and names.
func TestWhatisFromBTF(t *testing.T) {
	forEachSet(t, func(t *testing.T, set fixtures.Set) {
		btf := openWith(t, set, false, "oom/vmcore.lzo")
		dwarf := openWith(t, set, true, "oom/vmcore.lzo")
		for _, n := range []string{"struct list_head", "struct task_struct", "union bpf_attr", "enum pid_type", "schedule", "handle_mm_fault", "runqueues"} {
			var b, d json.RawMessage
			runJSON(t, btf, &b, append([]string{"whatis"}, strings.Fields(n)...)...)
			runJSON(t, dwarf, &d, append([]string{"whatis"}, strings.Fields(n)...)...)
			if !bytes.Equal(b, d) {
				t.Errorf("whatis %s from the dump's BTF:\n%s\nfrom DWARF:\n%s", n, b, d)
			}
		}
		err := btf.Run([]string{"whatis", "no_such_name_anywhere"}, &bytes.Buffer{}, false)
		if err == nil || !strings.Contains(err.Error(), "BTF") || !strings.Contains(err.Error(), "has no such name") {
			t.Errorf("whatis of a name BTF lacks: %v", err)
		}
	})
}

// A vmlinux stripped of its DWARF (objcopy --strip-debug keeps .BTF):
// whatis answers from its BTF, and for a name BTF lacks says the DWARF
// could not be read.
func TestWhatisStrippedVmlinux(t *testing.T) {
	// The stripped vmlinux has only its .BTF: a forced DWARF run (make
	// types-dwarf) has nothing to force.
	t.Setenv(symbols.TypesEnv, "")
	set := set61(t)
	stripped := filepath.Join(t.TempDir(), "vmlinux")
	if out, err := exec.Command("objcopy", "--strip-debug", set.Path(t, "kernel", "vmlinux"), stripped).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	tr := openFiles(t, stripped, set.Path(t, "oom", "vmcore.lzo"))
	if got := runText(t, tr, "whatis", "schedule"); got != "void schedule(void);\n" {
		t.Errorf("whatis schedule: %q", got)
	}
	err := tr.Run([]string{"whatis", "jiffies"}, &bytes.Buffer{}, false)
	if err == nil || !strings.Contains(err.Error(), "has no such name") || !strings.Contains(err.Error(), "DWARF") {
		t.Errorf("whatis jiffies: %v", err)
	}
}

// struct prints what crash 8.0.2 prints on 4.18 (where crash reads the
// kernel right), line for line: whole structs (the panicking task's
// task_struct: nested structs and unions, bitfields, strings, arrays,
// function and data pointers named by their symbol, flexible arrays;
// init_mm; init_uts_ns; fair_sched_class), members (a list, a path
// through a struct, the last member of a struct) and a list_head.
func TestStructMatchesCrash(t *testing.T) {
	set := fixtures.SetsWith418(t)[2]
	tr := openWith(t, set, true, "oom/vmcore.elf")
	pt := panicTask(t, tr.K)
	init, err := tr.K.Symbol("init_task")
	if err != nil {
		t.Fatal(err)
	}
	off, err := tr.K.Types.Offset("task_struct", "tasks")
	if err != nil {
		t.Fatal(err)
	}
	cmds := [][]string{
		{"task_struct.comm,pid", fmt.Sprintf("%x", pt.Addr)},
		{"list_head", fmt.Sprintf("%x", init+off)},
		{"task_struct.tasks", "init_task"},
		{"task_struct.tasks.next,pid", "init_task"},
		{"list_head.prev", fmt.Sprintf("%x", init+off)},
		{"task_struct", fmt.Sprintf("%x", pt.Addr)},
		{"mm_struct", "init_mm"},
		{"uts_namespace", "init_uts_ns"},
		{"sched_class", "fair_sched_class"},
		{"rq.nr_running,cpu", "runqueues:a"}, // per-CPU copies
		{"spinlock_t", "init_task"},          // a typedef: crash's "struct spinlock_t {"
		{"task_struct.se.load.weight", "init_task"},
	}
	var crashCmds []string
	for _, c := range cmds {
		crashCmds = append(crashCmds, "struct "+strings.Join(c, " "))
	}
	out := crashBT(t, set, "oom/vmcore.elf", crashCmds...)
	for _, c := range cmds {
		got := cutLongStrings(runText(t, tr, append([]string{"struct"}, c...)...))
		if !strings.Contains(cutLongStrings(out), got) {
			t.Errorf("struct %s:\n%s\nnot in crash's output:\n%s", strings.Join(c, " "), got, out)
		}
	}
}

// gdbPrints prints each expression with gdb 13 on a fixture's ELF dump
// (the vmlinux's symbols moved by the dump's KASLR offset), with the
// settings crash gives its gdb: print pretty, 512 elements, no repeats.
func gdbPrints(t *testing.T, set fixtures.Set, dump string, kaslr uint64, exprs ...string) []string {
	t.Helper()
	bin, err := exec.LookPath("gdb")
	if err != nil {
		t.Fatal("gdb is required: ", err)
	}
	args := []string{"-batch", "-nx", "-ex", "core-file " + set.Path(t, strings.Split(dump, "/")...),
		"-ex", fmt.Sprintf("symbol-file -o 0x%x %s", kaslr, set.Path(t, "kernel", "vmlinux")),
		"-ex", "set print pretty on", "-ex", "set print elements 512", "-ex", "set print repeats unlimited", "-ex", "set width 0"}
	for i, e := range exprs {
		args = append(args, "-ex", fmt.Sprintf("echo ==%d==\\n", i), "-ex", "p "+e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	var res []string
	for i := range exprs {
		_, rest, ok := strings.Cut(string(out), fmt.Sprintf("==%d==\n", i))
		if !ok {
			t.Fatalf("gdb printed no %s:\n%s", exprs[i], out)
		}
		rest, _, _ = strings.Cut(rest, fmt.Sprintf("==%d==\n", i+1))
		res = append(res, rest)
	}
	return res
}

// struct prints a whole struct as gdb 13 prints it (with crash's print
// settings; crash itself does not read 6.x), line for line, on every
// fixture kernel and from every type source: the vmlinux's BTF, its
// DWARF, the dump's BTF (4.18: DWARF only). gdb reads the ELF dump at
// the same addresses.
func TestStructMatchesGDB(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		const dump = "oom/vmcore.elf"
		tr := openWith(t, set, true, dump)
		k := tr.K
		pt := panicTask(t, k)
		sym := func(n string) uint64 {
			a, err := k.Symbol(n)
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		off, err := k.Types.Offset("task_struct", "tasks")
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct{ typ, addr string }{
			{"task_struct", fmt.Sprintf("%x", pt.Addr)},
			{"mm_struct", fmt.Sprintf("%x", sym("init_mm"))},
			{"uts_namespace", fmt.Sprintf("%x", sym("init_uts_ns"))},
			{"list_head", fmt.Sprintf("%x", sym("init_task")+off)},
		}
		var exprs []string
		for _, c := range cases {
			exprs = append(exprs, fmt.Sprintf("*(struct %s *)0x%s", c.typ, c.addr))
		}
		want := gdbPrints(t, set, dump, k.KASLR, exprs...)
		trs := []struct {
			name string
			tr   *Triage
		}{{"vmlinux " + symbols.TypesName(k.Types), tr}}
		if set.Name != fixtures.Series418 {
			v := tr.K.Vmlinux
			d, err := v.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			dk, err := kernel.LoadWithTypes(k.Dump, v, d)
			if err != nil {
				t.Fatal(err)
			}
			trs = append(trs, struct {
				name string
				tr   *Triage
			}{"vmlinux DWARF", &Triage{K: dk}}, struct {
				name string
				tr   *Triage
			}{"dump BTF", openWith(t, set, false, dump)})
		}
		for _, s := range trs {
			for i, c := range cases {
				got := cutLongStrings(runText(t, s.tr, "struct", c.typ, c.addr))
				w := cutLongStrings(regexp.MustCompile(`^\$\d+ = `).ReplaceAllString(want[i], "struct "+c.typ+" "))
				// RHEL's kABI padding members are named by
				// __UNIQUE_ID (a per-unit __COUNTER__): the copy of
				// the type in one compilation unit or another
				// (gdb 13 and we may pick different ones) numbers
				// them differently.
				got, w = uniqueID.ReplaceAllString(got, "${1}N"), uniqueID.ReplaceAllString(w, "${1}N")
				if got != w {
					t.Errorf("%s: struct %s %s differs from gdb's print:\n%s", s.name, c.typ, c.addr, lineDiff(got, w))
				}
			}
		}
	})
}

// truncatedString is a char array gdb cut at its element limit.
var truncatedString = regexp.MustCompile(`(= ")((?:[^"\\]|\\.){0,240})(?:[^"\\]|\\.)*"\.\.\.`)

// cutLongStrings keeps the first 240 characters of every char array
// printed cut at the element limit: where the cut falls depends on how a
// UTF-8 host's gdb counts multi-byte characters (random FPU bytes).
func cutLongStrings(s string) string {
	return truncatedString.ReplaceAllString(s, `$1$2"...`)
}

var uniqueID = regexp.MustCompile(`(__UNIQUE_ID_[A-Za-z_]*?)\d+\b`)

// lineDiff shows the first lines where two outputs differ.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	n := 0
	for i := 0; i < max(len(g), len(w)) && n < 8; i++ {
		var x, y string
		if i < len(g) {
			x = g[i]
		}
		if i < len(w) {
			y = w[i]
		}
		if x != y {
			fmt.Fprintf(&b, "line %d:\n  ours %.200s\n  gdb  %.200s\n", i+1, x, y)
			n++
		}
	}
	if len(g) != len(w) {
		fmt.Fprintf(&b, "%d lines, gdb %d\n", len(g), len(w))
	}
	return b.String()
}
