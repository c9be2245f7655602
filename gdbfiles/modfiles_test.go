package gdbfiles

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
)

// Module files are found by module name however they are stored: plain,
// .ko.zst, .ko.xz, with '-' or '_' in the file name.
func TestModuleFiles(t *testing.T) {
	orig := fixtureModule(t)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	want, err := AllocSections(orig)
	if err != nil || len(want) < 3 {
		t.Fatalf("sections %v %v", want, err)
	}
	dir := t.TempDir()
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(filepath.Join(dir, "qemu-fw-cfg.ko.zst"), enc.EncodeAll(data, nil), 0o644)
	xzDir := filepath.Join(dir, "xz")
	os.MkdirAll(xzDir, 0o755)
	os.WriteFile(filepath.Join(xzDir, "virtio_blk.ko"), data, 0o644)
	if out, err := exec.Command("xz", filepath.Join(xzDir, "virtio_blk.ko")).CombinedOutput(); err != nil {
		t.Fatalf("xz: %v %s", err, out)
	}
	files := &ModuleFiles{Dirs: []string{dir}, CacheDir: filepath.Join(dir, "cache")}
	for _, name := range []string{"qemu_fw_cfg", "virtio_blk"} {
		p, err := files.Find(name)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		if !bytes.Equal(got, data) || !strings.HasPrefix(p, files.CacheDir) {
			t.Fatalf("%s: %s is not the decompressed module", name, p)
		}
		secs, err := AllocSections(p)
		if err != nil || strings.Join(secs, " ") != strings.Join(want, " ") {
			t.Fatalf("%s sections %v %v", name, secs, err)
		}
	}
	if _, err := files.Find("nonexistent"); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("missing module: %v", err)
	}
}

// The library list names each found module once, its SHF_ALLOC sections
// at the kernel's addresses (the rest at distinct non-canonical ones), its
// file name escaped; a module with no file is a note, not an entry.
func TestLibrariesXML(t *testing.T) {
	orig := fixtureModule(t)
	secs, err := AllocSections(orig)
	if err != nil || len(secs) < 3 {
		t.Fatalf("sections %v %v", secs, err)
	}
	dir := filepath.Join(t.TempDir(), "a<b>&\"c\nd")
	os.Mkdir(dir, 0o755)
	data, _ := os.ReadFile(orig)
	os.WriteFile(filepath.Join(dir, "qemu_fw_cfg.ko"), data, 0o644)
	mods := []*kernel.Module{
		{Name: "qemu_fw_cfg", Sections: []kernel.ModuleSection{{Name: secs[0], Addr: 0xffffffffc0001000}}},
		{Name: "absent"},
	}
	served := &Served{}
	defer served.Close()
	x, notes := LibrariesXML(mods, &ModuleFiles{Dirs: []string{dir}}, served)
	if !served.Has(filepath.Join(dir, "qemu_fw_cfg.ko")) {
		t.Errorf("the listed module is not served")
	}
	var want bytes.Buffer
	want.WriteString("<library-list>\n  <library name=\"" + strings.NewReplacer("<", "&lt;", ">", "&gt;", "&", "&amp;", `"`, "&quot;", "\n", "&#xa;").Replace(filepath.Join(dir, "qemu_fw_cfg.ko")) + "\">\n")
	want.WriteString("    <section address=\"0xffffffffc0001000\"/>\n")
	for i := 1; i < len(secs); i++ {
		want.WriteString("    <section address=\"0x" + strconv.FormatUint(0x8000000000000000+uint64(i)<<32, 16) + "\"/>\n")
	}
	want.WriteString("  </library>\n</library-list>\n")
	if string(x) != want.String() {
		t.Errorf("library list:\n%s\nwant:\n%s", x, want.String())
	}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "module absent: no absent.ko in ") {
		t.Errorf("notes %q", notes)
	}
}

// fixtureModule is the path of qemu_fw_cfg.ko among the fixture's modules.
func fixtureModule(t *testing.T) string {
	t.Helper()
	var orig string
	filepath.WalkDir(fixtures.Path(t, "kernel", "modules"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "qemu_fw_cfg.ko" {
			orig = p
		}
		return nil
	})
	if orig == "" {
		t.Fatal("no qemu_fw_cfg.ko in the fixture modules")
	}
	return orig
}
