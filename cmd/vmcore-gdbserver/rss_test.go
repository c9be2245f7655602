package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// drgnRSS reads every process's RSS (pages) the way the kernel's
// get_mm_rss() does, with drgn and the vmlinux's DWARF: an independent
// reader of the same counters, enum indices and layouts included.
func drgnRSS(t *testing.T, f gdbFixture, dump string) map[int]int64 {
	t.Helper()
	drgn, err := exec.LookPath("drgn")
	if err != nil {
		t.Fatal("drgn (python3-drgn) is required: it cross-checks RSS; `make test` installs it")
	}
	script := filepath.Join(t.TempDir(), "rss.py")
	os.WriteFile(script, []byte(`from drgn import TypeKind
from drgn.helpers.linux.pid import for_each_task
idx = [prog.constant(n).value_() for n in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES")]
for t in for_each_task(prog):
    mm = t.mm
    if not mm:
        continue
    rs = mm.rss_stat
    total = 0
    for i in idx:
        if rs.type_.kind == TypeKind.ARRAY:
            v = rs[i].count.value_()
        else:
            v = rs.count[i].counter.value_()
        total += max(v, 0)
    print(int(t.pid), total)
`), 0o644)
	out := runCmd(t, drgn, "-q", "-c", dump, "-s", f.vmlinux(t), script)
	m := map[int]int64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var pid int
		var rss int64
		fs := strings.Fields(line)
		if len(fs) != 2 {
			t.Fatalf("drgn output %q", line)
		}
		pid, err1 := strconv.Atoi(fs[0])
		rss, err2 := strconv.ParseInt(fs[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("drgn output %q", line)
		}
		m[pid] = rss
	}
	return m
}

// ps's RSS of every process equals the kernel's own counters (file, anon
// and shmem pages; swap entries are not resident), read by drgn.
func TestPSRSSMatchesKernelCounters(t *testing.T) {
	for _, f := range gdbFixtures {
		if f.name != "oom-elf" && f.name != "6.12-oom-elf" && f.name != "4.18-oom-elf" {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			dump := f.paths(t)[0]
			want := drgnRSS(t, f, dump)
			out, stderr, code := runCLI(t, "ps", "--json", f.vmlinux(t), dump)
			if code != 0 {
				t.Fatalf("ps: %s", stderr)
			}
			var ps []struct {
				PID     int    `json:"pid"`
				RSSKB   int64  `json:"rss_kb"`
				Comm    string `json:"comm"`
				Kthread bool   `json:"kernel_thread"`
			}
			if err := json.Unmarshal(out, &ps); err != nil {
				t.Fatal(err)
			}
			d, err := vmcore.Open(dump)
			if err != nil {
				t.Fatal(err)
			}
			kb := int64(d.PageSize() / 1024)
			d.Close()
			checked, sawInit := 0, false
			for _, e := range ps {
				w, ok := want[e.PID]
				if !ok || e.Kthread {
					continue
				}
				if e.RSSKB != w*kb {
					t.Errorf("pid %d (%s): RSS %d KB, the kernel's counters say %d KB", e.PID, e.Comm, e.RSSKB, w*kb)
				}
				checked++
				sawInit = sawInit || e.PID == 1
			}
			if checked < 3 || !sawInit {
				t.Fatalf("checked %d processes (init among them: %v); drgn saw %d", checked, sawInit, len(want))
			}
		})
	}
}
