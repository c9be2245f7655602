package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// Without a vmlinux given, one where debug packages put it is found: by
// build id (6.x dumps publish it) or, for a dump without one (4.18), by
// release only when its linux_banner is the dump's; a wrong kernel's file
// at that place is never taken.
func TestLocateVmlinux(t *testing.T) {
	t.Setenv("DEBUGINFOD_URLS", "")
	old := debugRoot
	t.Cleanup(func() { debugRoot = old })
	sets := fixtures.SetsWith418(t)
	for _, c := range []struct {
		set      fixtures.Set
		place    func(root, release, buildID string) string
		wrong    fixtures.Set // a vmlinux of another kernel at the same place
		wantFrom string
	}{
		{sets[0], func(root, r, id string) string { return filepath.Join(root, ".build-id", id[:2], id[2:]+".debug") }, sets[1], "build id"},
		{sets[1], func(root, r, id string) string { return filepath.Join(root, "boot", "vmlinux-"+r) }, sets[0], "build id"},
		{sets[2], func(root, r, id string) string { return filepath.Join(root, "lib", "modules", r, "vmlinux") }, sets[0], "linux_banner"},
	} {
		t.Run(c.set.Name, func(t *testing.T) {
			d, err := vmcore.Open(c.set.Path(t, "oom", "vmcore.lzo"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			info, err := d.VMCOREINFO()
			if err != nil {
				t.Fatal(err)
			}
			id := info.BuildID
			if id == "" {
				id = "00"
			}
			for _, try := range []struct {
				file string
				ok   bool
			}{{c.wrong.Path(t, "kernel", "vmlinux"), false}, {c.set.Path(t, "kernel", "vmlinux"), true}} {
				debugRoot = t.TempDir()
				p := c.place(debugRoot, info.OSRelease, strings.ToLower(id))
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.Symlink(try.file, p); err != nil {
					t.Fatal(err)
				}
				got, from, err := newLocator(nil).vmlinux(d, info)
				if try.ok && (err != nil || got != p || !strings.Contains(from, c.wantFrom)) {
					t.Errorf("the dump's vmlinux at %s: got %q (%s), %v", p, got, from, err)
				}
				if !try.ok && err == nil {
					t.Errorf("another kernel's vmlinux at %s was taken (%s)", p, from)
				}
			}
		})
	}
}
