package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// analyze --json over many dumps at once: a directory (searched, links
// to files followed, non-dumps skipped) and files, with the 6.1 vmlinux
// given: one record a line in the operands' order, the 6.1 dumps with
// that vmlinux, the 6.12 one with its own kallsyms and BTF (the given
// vmlinux is not its), a 4.18 one (no BTF, no kallsyms, no vmlinux
// found) from what the dump alone says (the log, the CPUs' notes), with
// what needs the vmlinux listed as unknown, and damaged or missing files
// as error records naming the file; the run goes on and
// gives the same bytes with one job and with three.
func TestAnalyzeFleet(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(sets[0].Path(t, "oom", "vmcore.lzo"), "a.lzo")
	link(sets[0].Path(t, "modcrash", "vmcore.elf"), "sub/b.elf")
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a dump\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.kdump"), []byte("KDUMP   truncated header"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "gone.vmcore")
	args := []string{"analyze", "--json", sets[0].Path(t, "kernel", "vmlinux"), dir,
		sets[1].Path(t, "oom", "vmcore.lzo"), sets[2].Path(t, "modcrash", "vmcore.lzo"), missing}
	want := []struct{ dump, class, vmlinux, err, unknown string }{
		{filepath.Join(dir, "a.lzo"), "oom-panic", sets[0].Path(t, "kernel", "vmlinux"), "", ""},
		{filepath.Join(dir, "bad.kdump"), "", "", "bad.kdump", ""},
		{filepath.Join(dir, "sub/b.elf"), "module-oops", sets[0].Path(t, "kernel", "vmlinux"), "", ""},
		{sets[1].Path(t, "oom", "vmcore.lzo"), "oom-panic", "", "", ""},
		{sets[2].Path(t, "modcrash", "vmcore.lzo"), "module-oops", "", "", "give the vmlinux"},
		{missing, "", "", "gone.vmcore", ""},
	}
	env := []string{"DEBUGINFOD_URLS="}
	var outputs []string
	for _, jobs := range []string{"1", "3"} {
		out, stderr, code := runCLIEnv(t, env, append([]string{args[0], "--jobs", jobs}, args[1:]...)...)
		if code != 0 {
			t.Fatalf("--jobs %s: exit %d: %s", jobs, code, stderr)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("--jobs %s: %d records, want %d:\n%s", jobs, len(lines), len(want), out)
		}
		for i, l := range lines {
			var r struct {
				Schema, Dump, Vmlinux, Error, Class string
				Facts                               []map[string]string
				Unknown                             []string
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("record %d: %v: %s", i, err, l)
			}
			w := want[i]
			if r.Schema != FleetSchema || r.Dump != w.dump || r.Class != w.class || r.Vmlinux != w.vmlinux {
				t.Errorf("record %d: schema %q dump %q class %q vmlinux %q; want %+v", i, r.Schema, r.Dump, r.Class, r.Vmlinux, w)
			}
			if (w.err == "") != (r.Error == "") || !strings.Contains(r.Error, w.err) || strings.Contains(r.Error, "\n") {
				t.Errorf("record %d (%s): error %q, want one naming %q", i, w.dump, r.Error, w.err)
			}
			if w.class != "" && len(r.Facts) == 0 {
				t.Errorf("record %d: no facts", i)
			}
			if w.unknown != "" && !strings.Contains(strings.Join(r.Unknown, "\n"), w.unknown) {
				t.Errorf("record %d: no unknown saying %q: %q", i, w.unknown, r.Unknown)
			}
		}
		outputs = append(outputs, out)
	}
	if outputs[0] != outputs[1] {
		t.Error("--jobs 1 and --jobs 3 wrote different bytes")
	}
	// A run where nothing could be analyzed fails.
	if _, stderr, code := runCLIEnv(t, env, "analyze", "--json", missing, filepath.Join(dir, "bad.kdump")); code == 0 {
		t.Errorf("all dumps bad: exit 0 (%s)", stderr)
	}
	// Without --json several dumps are refused in one line.
	if _, stderr, code := runCLIEnv(t, env, "analyze", dir); code == 0 || !strings.Contains(stderr, "--json") {
		t.Errorf("analyze DIR without --json: exit %d, %q", code, stderr)
	}
}
