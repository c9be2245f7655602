package triage

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

func factOf(a *Analysis, name string) string {
	for _, f := range a.Facts {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// analyze classifies every fixture crash as its recipe made it, names
// the task the model marks as panicking, and states facts that agree
// with what the kernel printed on its console (a different record of the
// same events than the dump's memory).
func TestAnalyze(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	for _, c := range []struct {
		set   fixtures.Set
		dump  string
		class string
	}{
		{sets[0], "oom/vmcore.lzo", "oom-panic"},
		{sets[1], "oom/vmcore.lzo", "oom-panic"},
		{sets[2], "oom/vmcore.lzo", "oom-panic"},
		{sets[0], "modcrash/vmcore.lzo", "module-oops"},
		{sets[1], "modcrash/vmcore.lzo", "module-oops"},
		{sets[2], "modcrash/vmcore.lzo", "module-oops"},
		{sets[2], "sysrq/vmcore.lzo", "sysrq"},
		{sets[0], "scale/vmcore.lzo", "sysrq"},
		{sets[0], "qemu57/vmcore.elf", "none"},
	} {
		t.Run(c.set.Name+"/"+c.dump, func(t *testing.T) {
			tr := openWith(t, c.set, true, c.dump)
			a, err := tr.Analyze()
			if err != nil {
				t.Fatal(err)
			}
			if a.Class != c.class {
				t.Fatalf("class %q (%s), want %q", a.Class, a.Summary, c.class)
			}
			cons, err := os.ReadFile(c.set.Path(t, strings.SplitN(c.dump, "/", 2)[0], "console.log"))
			if err != nil {
				t.Fatal(err)
			}
			console := string(cons)
			if c.class != "none" {
				sys, err := tr.Sys()
				if err != nil || sys.PanicPID == nil {
					t.Fatalf("sys: %v", err)
				}
				if task := factOf(a, "task"); !strings.HasPrefix(task, "pid "+itoa(int(*sys.PanicPID))+" ") {
					t.Errorf("task %q, sys says pid %d", task, *sys.PanicPID)
				}
				if len(a.Backtrace) == 0 {
					t.Error("no backtrace")
				}
				// The taint as the kernel spelled it in its oops/OOM header.
				if m := regexp.MustCompile(`(?m)Comm: .*?(Not tainted|Tainted: (.*?)) +(?:-  -)? ?\S*` + regexp.QuoteMeta(tr.K.Info.OSRelease)).FindStringSubmatch(console); m != nil {
					want := "not tainted"
					if m[1] != "Not tainted" {
						want = strings.TrimRight(m[2], " ")
					}
					if got := factOf(a, "taint"); got != want {
						t.Errorf("taint %q, the console printed %q", got, want)
					}
				} else {
					t.Errorf("no taint in the console")
				}
			}
			switch c.class {
			case "oom-panic":
				mode := "1"
				if strings.Contains(factOf(a, "panic message"), "compulsory") {
					mode = "2"
				}
				if got := factOf(a, "panic_on_oom"); got != mode {
					t.Errorf("panic_on_oom %q; the panic message says %s", got, mode)
				}
				if len(a.Memory) == 0 || len(a.TopRSS) == 0 || a.TopRSS[0].Comm != "stress" {
					t.Errorf("memory %d rows, top RSS %+v", len(a.Memory), a.TopRSS)
				}
				// The largest slab caches, largest first; on 6.12 Debian's
				// makedumpfile may drop slab pages (it does not know 6.10+'s
				// page types), and then the report says what it missed.
				for i := 1; i < len(a.TopSlabs); i++ {
					if a.TopSlabs[i].Bytes > a.TopSlabs[i-1].Bytes {
						t.Errorf("top slabs out of order: %+v", a.TopSlabs)
					}
				}
				// Where stress was in user space: its text and its stack
				// (6.12's lzo dump may lack the maple nodes: then absent).
				rip, rsp := factOf(a, "user RIP"), factOf(a, "user RSP")
				stressText := strings.Contains(rip, "r-xp /bin/stress") || c.set.Name == "6.12" && strings.Contains(rip, "r-xp a file")
				if (rip != "" || c.set.Name != "6.12") && (!stressText || !strings.Contains(rsp, "[stack]")) {
					t.Errorf("user RIP %q, user RSP %q", rip, rsp)
				}
				if len(a.TopSlabs) == 0 && (c.set.Name != "6.12" || !strings.Contains(strings.Join(a.Unknown, "\n"), "slab caches")) {
					t.Errorf("no slab caches and no reason: %v", a.Unknown)
				}
				if len(a.OOMReport) < 10 || !strings.Contains(a.OOMReport[0], "invoked oom-killer") || !strings.Contains(a.OOMReport[len(a.OOMReport)-1], "Kernel panic") {
					t.Errorf("OOM report: %d lines", len(a.OOMReport))
				}
				// The allocation path that found no memory.
				var fns []string
				for _, f := range a.Backtrace {
					fns = append(fns, f.Function)
				}
				if bt := strings.Join(fns, " "); !strings.Contains(bt, "out_of_memory") || !strings.Contains(bt, "__alloc_pages") {
					t.Errorf("the backtrace has no allocation path into the OOM killer: %s", bt)
				}
				lines := 0
				for _, f := range a.Backtrace {
					lines += len(f.Source)
				}
				if lines == 0 {
					t.Error("no source line in the backtrace")
				}
			case "sysrq":
				// 4.18's sysrq crash is a NULL write in sysrq_handle_crash
				// (6.x panics without faulting).
				if c.set.Name == "4.18" {
					if !strings.Contains(factOf(a, "faulting instruction"), "sysrq_handle_crash") || !strings.HasPrefix(a.Backtrace[0].Function, "sysrq_handle_crash") ||
						!strings.HasPrefix(factOf(a, "faulting address lies in"), "user space below mmap_min_addr") {
						t.Errorf("instruction %q, frame 0 %q, address in %q", factOf(a, "faulting instruction"), a.Backtrace[0].Function, factOf(a, "faulting address lies in"))
					}
				}
			case "module-oops":
				if !strings.Contains(a.Summary, "vmcore_crash") || !strings.Contains(factOf(a, "faulting instruction"), "vmcore_crash_inner") {
					t.Errorf("summary %q, instruction %q", a.Summary, factOf(a, "faulting instruction"))
				}
				m := regexp.MustCompile(`BUG: .*(?:address: |dereference at )([0-9a-f]+)`).FindStringSubmatch(console)
				if m == nil || factOf(a, "faulting address") != m[1] {
					t.Errorf("faulting address %q, the console %v", factOf(a, "faulting address"), m)
				}
				// vmcore_crash writes through a NULL pointer.
				if w := factOf(a, "faulting address lies in"); !strings.HasPrefix(w, "user space below mmap_min_addr") {
					t.Errorf("faulting address lies in %q", w)
				}
			}
			var b bytes.Buffer
			if err := tr.Run([]string{"analyze"}, &b, true); err != nil {
				t.Fatal(err)
			}
			var js map[string]any
			if err := json.Unmarshal(b.Bytes(), &js); err != nil || js["class"] != c.class {
				t.Errorf("--json: class %v (%v)", js["class"], err)
			}
			b.Reset()
			if err := tr.Run([]string{"analyze"}, &b, false); err != nil || !strings.HasPrefix(b.String(), "# Crash analysis: ") {
				t.Errorf("markdown: %v\n%s", err, b.String())
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
