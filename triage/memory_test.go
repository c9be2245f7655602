package triage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

func runText(t *testing.T, tr *Triage, args ...string) string {
	t.Helper()
	var b bytes.Buffer
	if err := tr.Run(args, &b, false); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return b.String()
}

var rdLine = regexp.MustCompile(`(?m)^ *([0-9a-f]+):  (.*)$`)

// rd and sym give what crash 8.0.2 gives on the 4.18 dump: the same lines
// of rd (hex and ASCII), the same symbol for an address and address for
// a symbol.
func TestRdSymMatchCrash(t *testing.T) {
	set := fixtures.SetsWith418(t)[2]
	dump := "oom/vmcore.elf"
	tr := openWith(t, set, true, dump)
	panicAddr, err := tr.K.Symbol("panic")
	if err != nil {
		t.Fatal(err)
	}
	ret := fmt.Sprintf("%x", panicAddr+0x42)
	cmds := []string{"rd linux_banner 5", "rd init_uts_ns 9", "sym panic", "sym " + ret, "sym jiffies_64", "sym schedule", "sym runqueues", "sym linux_banner", "sym __per_cpu_offset"}
	out := crashBT(t, set, dump, cmds...)
	// crash's rd lines, in order.
	var want []string
	for _, m := range rdLine.FindAllStringSubmatch(out, -1) {
		want = append(want, m[1]+": "+strings.TrimRight(m[2], " "))
	}
	var got []string
	for _, c := range cmds[:2] {
		for _, m := range rdLine.FindAllStringSubmatch(runText(t, tr, strings.Fields(c)...), -1) {
			got = append(got, m[1]+": "+strings.TrimRight(m[2], " "))
		}
	}
	if len(want) != 8 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rd:\n ours:\n%s\n crash:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// sym: the whole line, type letter and source line included (crash
	// keeps a "./" the DWARF file name has; ours is cleaned).
	crashLines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && strings.HasPrefix(f[1], "(") {
			if len(f) == 5 {
				f[3] = path.Clean(strings.TrimSuffix(f[3], ":")) + ":"
			}
			crashLines[f[0]+" "+f[2]] = strings.Join(f, " ")
		}
	}
	for _, c := range cmds[2:] {
		line := strings.TrimSpace(runText(t, tr, strings.Fields(c)...))
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("%s: %q", c, line)
		}
		if want := crashLines[f[0]+" "+f[2]]; strings.Join(f, " ") != want {
			t.Errorf("%s:\n ours  %s\n crash %s", c, line, want)
		}
		if strings.Contains(c, "panic") && len(f) != 5 {
			t.Errorf("%s: no source line: %s", c, line)
		}
	}
}

// rd -p reads the same bytes as rd of the direct map; rd -u reads a
// task's user memory (its stack holds its environment strings).
func TestRdPhysicalAndUser(t *testing.T) {
	for _, set := range fixtures.Sets(t) {
		t.Run(set.Name, func(t *testing.T) {
			tr := openWith(t, set, true, "oom/vmcore.elf")
			pob, err := tr.K.Symbol("page_offset_base")
			if err != nil {
				t.Fatal(err)
			}
			base, err := tr.K.ReadU64(pob)
			if err != nil {
				t.Fatal(err)
			}
			// The physical address of linux_banner, through the page tables.
			banner, _ := tr.K.Symbol("linux_banner")
			tl, err := tr.K.VM.Translate(banner)
			if err != nil {
				t.Fatal(err)
			}
			pa := tl.Phys
			phys := runText(t, tr, "rd", "-p", fmt.Sprintf("%x", pa), "4")
			virt := runText(t, tr, "rd", fmt.Sprintf("%x", base+pa), "4")
			strip := func(s string) string { return regexp.MustCompile(`(?m)^ *[0-9a-f]+:`).ReplaceAllString(s, "") }
			if !strings.Contains(phys, "Linux version") || strip(phys) != strip(virt) {
				t.Errorf("rd -p:\n%s\nrd of the direct map:\n%s", phys, virt)
			}
			var pid int
			for _, task := range tr.K.Tasks {
				if task.Comm == "stress" && task.MM != 0 {
					pid = int(task.PID)
				}
			}
			if pid == 0 {
				t.Fatal("no stress task")
			}
			// The user stack pointer saved on kernel entry.
			bt, err := tr.BT(false, []int{pid})
			if err != nil || len(bt) != 1 {
				t.Fatal(err)
			}
			var rsp string
			for _, f := range bt[0].Frames {
				if f.User {
					rsp = f.Regs["rsp"]
				}
			}
			if rsp == "" {
				// The OOM kill always happens in stress's page fault.
				t.Fatalf("the stress task's bt has no user-space frame: %+v", bt[0].Frames)
			}
			out := runText(t, tr, "rd", "-u", fmt.Sprint(pid), rsp, "64")
			if n := len(rdLine.FindAllString(out, -1)); n != 32 || strings.Contains(out, "????") {
				t.Errorf("rd -u %d %s: %d lines:\n%s", pid, rsp, n, out)
			}
		})
	}
}

func grepLinesT(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// log -T is crash's log -T, byte for byte, on the 4.18 dumps; a dump
// without CRASHTIME (QEMU's) is refused in one line.
func TestLogWallMatchesCrash(t *testing.T) {
	set := fixtures.SetsWith418(t)[2]
	for _, dump := range []string{"oom/vmcore.elf", "sysrq/vmcore.elf"} {
		tr := openWith(t, set, true, dump)
		got := runText(t, tr, "log", "-T")
		out := crashBT(t, set, dump, "log -T")
		// crash's output is the log and nothing else (-s: no banner).
		want := strings.TrimRight(out, "\n") + "\n"
		if got != want {
			gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
			for i := range min(len(gl), len(wl)) {
				if gl[i] != wl[i] {
					t.Fatalf("%s: line %d:\n ours  %q\n crash %q", dump, i+1, gl[i], wl[i])
				}
			}
			t.Fatalf("%s: %d lines, crash %d", dump, len(gl), len(wl))
		}
	}
	tr := openWith(t, fixtures.Sets(t)[0], true, "qemu57/vmcore.elf")
	if err := tr.Run([]string{"log", "-T"}, &bytes.Buffer{}, false); err == nil || !strings.Contains(err.Error(), "CRASHTIME") {
		t.Errorf("QEMU dump: %v", err)
	}
}

// kmem -z: each populated zone's watermarks, present and managed pages
// are what the kernel's OOM report printed for it (free within the
// per-CPU drift), on every series; on 4.18 the whole output is crash's.
func TestKmemZones(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		tr := openWith(t, set, true, "oom/vmcore.elf")
		zs, err := tr.KmemZones()
		if err != nil {
			t.Fatal(err)
		}
		c := console(t, set)
		pageKB := tr.K.Dump.PageSize() / 1024
		re := regexp.MustCompile(`Node (\d+) (\w+) free:(\d+)kB (?:boost:\d+kB )?min:(\d+)kB low:(\d+)kB high:(\d+)kB .* present:(\d+)kB managed:(\d+)kB`)
		seen := 0
		for _, m := range re.FindAllStringSubmatch(c, -1) {
			var z *ZoneEntry
			for i := range zs {
				if fmt.Sprint(zs[i].Node) == m[1] && zs[i].Name == m[2] {
					z = &zs[i]
				}
			}
			if z == nil {
				t.Errorf("no zone %s of node %s", m[2], m[1])
				continue
			}
			seen++
			num := func(i int) uint64 { n, _ := strconv.ParseUint(m[i], 10, 64); return n / pageKB }
			for _, f := range []struct {
				name      string
				got, want uint64
			}{{"min", z.Min, num(4)}, {"low", z.Low, num(5)}, {"high", z.High, num(6)}, {"present", z.Present, num(7)}, {"managed", z.Managed, num(8)}} {
				if f.got != f.want {
					t.Errorf("%s %s: %d pages, the kernel printed %d", z.Name, f.name, f.got, f.want)
				}
			}
			if drift := uint64(125 * len(tr.K.CPUs)); z.Free+drift < num(3) || z.Free > num(3)+drift {
				t.Errorf("%s free: %d pages, the kernel printed %d", z.Name, z.Free, num(3))
			}
		}
		if seen < 2 {
			t.Fatalf("%d zones in the OOM report", seen)
		}
		if set.Name == fixtures.Series418 {
			got := runText(t, tr, "kmem", "-z")
			if want := crashBT(t, set, "oom/vmcore.elf", "kmem -z"); strings.TrimRight(got, "\n") != strings.TrimRight(want, "\n") {
				t.Errorf("kmem -z differs from crash's:\n%s\ncrash:\n%s", got, want)
			}
		}
	})
}

// whatis gives what crash's whatis gives on 4.18: prototypes (here with
// the parameter names crash leaves out), variables' types and struct
// definitions, line for line.
func TestWhatisMatchesCrash(t *testing.T) {
	set := fixtures.SetsWith418(t)[2]
	tr := openWith(t, set, true, "oom/vmcore.elf")
	names := []string{"handle_mm_fault", "__do_page_fault", "panic", "jiffies_64", "init_task", "struct list_head", "struct pt_regs", "struct page"}
	var cmds []string
	for _, n := range names {
		cmds = append(cmds, "whatis "+n)
	}
	out := crashBT(t, set, "oom/vmcore.elf", cmds...)
	for _, n := range names {
		var b bytes.Buffer
		if err := tr.Run(append([]string{"whatis"}, strings.Fields(n)...), &b, true); err != nil {
			t.Fatalf("whatis %s: %v", n, err)
		}
		var d struct {
			Kind   string                  `json:"kind"`
			Text   string                  `json:"text"`
			Return string                  `json:"return"`
			Params []struct{ Type string } `json:"params"`
		}
		if err := json.Unmarshal(b.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		want := d.Text
		if d.Kind == "function" {
			// crash: the types only.
			var ts []string
			for _, p := range d.Params {
				ts = append(ts, p.Type)
			}
			want = fmt.Sprintf("%s %s(%s);", d.Return, n, strings.Join(ts, ", "))
		}
		if !strings.Contains(out, want+"\n") {
			t.Errorf("whatis %s:\n%s\nnot in crash's output:\n%s", n, want, out)
		}
	}
	// Without a vmlinux, a name the dump's BTF lacks is refused with a
	// pointer to the vmlinux (TestWhatisFromBTF: the names it has).
	if err := openWith(t, fixtures.Sets(t)[0], false, "oom/vmcore.lzo").Run([]string{"whatis", "no_such_name_anywhere"}, &bytes.Buffer{}, false); err == nil || !strings.Contains(err.Error(), "vmlinux") {
		t.Errorf("without a vmlinux: %v", err)
	}
}
