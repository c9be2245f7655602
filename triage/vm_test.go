package triage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

var (
	vmRow    = regexp.MustCompile(`^\s*([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+) ?(.*)$`)
	filesRow = regexp.MustCompile(`^\s*(\d+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+(\S+)\s+(.*)$`)
	taskHead = regexp.MustCompile(`^PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: "(.*)"$`)
)

// vmRows are the VMA rows of vm's text (ours or crash's), after the
// VMA/START/END/FLAGS/FILE header.
func vmRows(out string) [][]string {
	var rows [][]string
	in := false
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 5 && f[0] == "VMA" && f[4] == "FILE" {
			in = true
			continue
		}
		if m := vmRow.FindStringSubmatch(l); in && m != nil {
			rows = append(rows, m[1:])
		} else if in {
			in = false
		}
	}
	return rows
}

// filesRows are the FD rows of files' text (ours or crash's).
func filesRows(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(out, "\n") {
		if m := filesRow.FindStringSubmatch(l); m != nil {
			rows = append(rows, m[1:])
		}
	}
	return rows
}

// permsOf is /proc/PID/maps's rwxp of hex vm_flags.
func permsOf(t *testing.T, flags string) string {
	f, err := strconv.ParseUint(flags, 16, 64)
	if err != nil {
		t.Fatalf("flags %q: %v", flags, err)
	}
	return kernel.VMA{Flags: f}.Perms()
}

// vm 1 and files 1 print, on every set and scenario, PID 1's mappings and
// descriptors as its /proc/1/maps and /proc/1/fd were printed on the
// console before the crash; --json carries the same.
func TestVMFilesTextMatchConsole(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		tr := openWith(t, set, true, "oom/vmcore.elf")
		out := runText(t, tr, "vm", "1")
		if m := taskHead.FindStringSubmatch(strings.SplitN(out, "\n", 2)[0]); m == nil || m[1] != "1" {
			t.Fatalf("vm 1: header %q", strings.SplitN(out, "\n", 2)[0])
		}
		// Less [vsyscall]: 4.18 prints the kernel's gate area
		// (get_gate_vma), which is no VMA of the mm, nor in crash's vm.
		var want []fixtures.Mapping
		for _, m := range fixtures.ConsoleMaps(t, set, "oom") {
			if m.Name != "[vsyscall]" {
				want = append(want, m)
			}
		}
		rows := vmRows(out)
		if len(rows) != len(want) {
			t.Fatalf("vm 1: %d rows, %d in /proc/1/maps:\n%s", len(rows), len(want), out)
		}
		for i, m := range want {
			r := rows[i]
			start, _ := strconv.ParseUint(r[1], 16, 64)
			end, _ := strconv.ParseUint(r[2], 16, 64)
			if start != m.Start || !(end == m.End || m.Name == "[heap]" && end > m.End) || permsOf(t, r[3]) != m.Perms || strings.TrimSpace(r[4]) != m.Name {
				t.Errorf("vm 1 row %q, /proc/1/maps %x-%x %s %q", r, m.Start, m.End, m.Perms, m.Name)
			}
		}
		if strings.Contains(out, "note:") {
			t.Errorf("vm 1 incomplete:\n%s", out)
		}
		var js VMResult
		var buf bytes.Buffer
		if err := tr.Run([]string{"vm", "1"}, &buf, true); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(buf.Bytes(), &js); err != nil || js.PID != 1 || len(js.VMAs) != len(want) || js.MM == "0" || js.PGD == "" || js.TotalVMKB == 0 {
			t.Errorf("vm 1 --json: %v %+v", err, js)
		}

		out = runText(t, tr, "files", "1")
		if !strings.Contains(out, "\nROOT: /    CWD: /") {
			t.Errorf("files 1: no ROOT: / CWD: / line:\n%s", out)
		}
		fds := fixtures.ConsoleFDs(t, set, "oom")
		got := map[string][]string{}
		for _, r := range filesRows(out) {
			got[r[0]] = r
		}
		if len(got) != len(fds) {
			t.Errorf("files 1: %d fds, %d in /proc/1/fd:\n%s", len(got), len(fds), out)
		}
		for _, fd := range fds {
			r, ok := got[strconv.Itoa(fd.FD)]
			if !ok || r[5] != fd.Target || !slices.Contains([]string{"REG", "DIR", "CHR", "BLK", "FIFO", "SOCK", "LNK"}, r[4]) {
				t.Errorf("files 1: fd %d -> %s: row %q", fd.FD, fd.Target, r)
			}
		}
	})
}

// Without a PID, vm and files are the panicking task's (as bt's).
func TestVMDefaultsToPanicTask(t *testing.T) {
	forEachSet418(t, func(t *testing.T, set fixtures.Set) {
		tr := openWith(t, set, true, "oom/vmcore.elf")
		var panicPID int32 = -1
		for _, task := range tr.K.Tasks {
			if task.Panic {
				panicPID = task.PID
			}
		}
		for _, cmd := range []string{"vm", "files"} {
			out := runText(t, tr, cmd)
			m := taskHead.FindStringSubmatch(strings.SplitN(out, "\n", 2)[0])
			if m == nil || m[1] != strconv.Itoa(int(panicPID)) {
				t.Errorf("%s: header %q, panicking pid %d", cmd, strings.SplitN(out, "\n", 2)[0], panicPID)
			}
			if cmd == "vm" && len(vmRows(out)) == 0 {
				t.Errorf("vm: no mappings:\n%s", out)
			}
		}
		for _, bad := range []string{"vm x", "vm 1 2", "files -1"} {
			if err := tr.Run(strings.Fields(bad), &bytes.Buffer{}, false); err == nil {
				t.Errorf("%s: no error", bad)
			}
		}
	})
}

// vm 1 and files 1 print what crash 8.0.2 prints on the 4.18 dumps
// (crash reads 4.18 right): the same VMAs (address, start, end, flags,
// and the file where crash names one; crash leaves [heap] and the like
// blank) and the same descriptors (file, dentry, inode, type, path).
func TestVMFilesMatchCrash(t *testing.T) {
	set := fixtures.SetsWith418(t)[2]
	for _, dump := range []string{"oom/vmcore.elf", "sysrq/vmcore.elf", "modcrash/vmcore.elf"} {
		t.Run(dump, func(t *testing.T) {
			tr := openWith(t, set, true, dump)
			theirs := crashBT(t, set, dump, "vm 1", "files 1")
			ours := runText(t, tr, "vm", "1") + runText(t, tr, "files", "1")
			cv, ov := vmRows(theirs), vmRows(ours)
			if len(cv) == 0 || len(cv) != len(ov) {
				t.Fatalf("vm 1: %d VMAs, crash %d:\n%s\ncrash:\n%s", len(ov), len(cv), ours, theirs)
			}
			for i := range cv {
				c, o := cv[i], ov[i]
				if c[0] != o[0] || c[1] != o[1] || c[2] != o[2] || c[3] != o[3] || (c[4] != "" && c[4] != o[4]) {
					t.Errorf("vm 1 row %d: %q, crash %q", i, o, c)
				}
			}
			cf, of := filesRows(theirs), filesRows(ours)
			if len(cf) == 0 || len(cf) != len(of) {
				t.Fatalf("files 1: %d fds, crash %d:\n%s\ncrash:\n%s", len(of), len(cf), ours, theirs)
			}
			for i := range cf {
				if strings.Join(cf[i], " ") != strings.Join(of[i], " ") {
					t.Errorf("files 1 row %d: %q, crash %q", i, of[i], cf[i])
				}
			}
			for _, line := range []string{"ROOT: /    CWD: /"} {
				if !strings.Contains(theirs, line) || !strings.Contains(ours, line) {
					t.Errorf("%q in ours %v, crash's %v", line, strings.Contains(ours, line), strings.Contains(theirs, line))
				}
			}
		})
	}
}

// A page the dump lacks leaves vm and files with what could be read and
// a note saying what could not (the 6.1 dump with PID 1's VMAs' page
// excluded).
func TestVMFilesSayWhatIsMissing(t *testing.T) {
	set := fixtures.Sets(t)[0]
	full := openWith(t, set, true, "oom/vmcore.lzo")
	var init *kernel.Task
	for _, task := range full.K.Tasks {
		if task.PID == 1 {
			init = task
		}
	}
	vmas, err := full.K.VMAs(init)
	if err != nil || len(vmas) == 0 {
		t.Fatal(err)
	}
	ft, err := full.K.Files(init)
	if err != nil || len(ft.Files) == 0 {
		t.Fatal(err)
	}
	var pfns []uint64
	for _, a := range []uint64{vmas[0].Addr, ft.Files[0].File} {
		tr, err := full.K.VM.Translate(a)
		if err != nil {
			t.Fatal(err)
		}
		pfns = append(pfns, tr.Phys/full.K.Dump.PageSize())
	}
	path := fixtures.ExcludePages(t, set.Path(t, "oom", "vmcore.lzo"), pfns)
	d, err := vmcore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	k, err := kernel.Load(d, full.K.Vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Triage{K: k, Dumps: []string{path}}
	out := runText(t, tr, "vm", "1")
	if !strings.Contains(out, "\nnote: ") || !strings.Contains(out, "excluded from the dump") || !strings.Contains(out, init.Comm) {
		t.Errorf("vm 1 with VMA %#x excluded:\n%s", vmas[0].Addr, out)
	}
	for _, r := range vmRows(out) {
		if r[0] == fmt.Sprintf("%x", vmas[0].Addr) {
			t.Errorf("vm 1 shows the excluded VMA: %q", r)
		}
	}
	out = runText(t, tr, "files", "1")
	if !strings.Contains(out, "excluded from the dump") {
		t.Errorf("files 1 with struct file %#x excluded:\n%s", ft.Files[0].File, out)
	}
}
