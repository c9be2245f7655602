package kernel

import (
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// A page makedumpfile left out of the dump loses what lies on it, said
// as such; VMAs and Files never return a mapping or path that is not the
// full dump's. The 4.18 list stops at the excluded VMA, the 6.1 tree
// skips it.
func TestVMAsFilesExcludedPages(t *testing.T) {
	sets := fixtures.SetsWith418(t)
	for _, set := range []fixtures.Set{sets[0], sets[2]} {
		t.Run(set.Name, func(t *testing.T) {
			full := loadIn(t, set, "oom/vmcore.lzo")
			init := taskByPID(t, full, 1)
			vmas, err := full.VMAs(init)
			if err != nil || len(vmas) < 4 {
				t.Fatalf("%d VMAs: %v", len(vmas), err)
			}
			ft, err := full.Files(init)
			if err != nil || len(ft.Files) == 0 {
				t.Fatalf("files: %v", err)
			}
			ps := full.Dump.PageSize()
			pageOf := func(va uint64) uint64 {
				tr, err := full.VM.Translate(va)
				if err != nil {
					t.Fatal(err)
				}
				return tr.Phys / ps
			}
			keep := map[uint64]bool{pageOf(init.Addr): true, pageOf(init.MM): true}
			excluded := func(why string) bool { return strings.Contains(why, "excluded from the dump") }

			// A VMA in the middle, on a page of neither the task nor its mm.
			var drop VMA
			for _, v := range vmas[1 : len(vmas)-1] {
				if !keep[pageOf(v.Addr)] {
					drop = v
					break
				}
			}
			if drop.Addr == 0 {
				t.Fatal("every VMA shares a page with the task or its mm")
			}
			k := loadPaths(t, set, fixtures.ExcludePages(t, set.Path(t, "oom", "vmcore.lzo"), []uint64{pageOf(drop.Addr)}))
			got, err := k.VMAs(taskByPID(t, k, 1))
			if err == nil || !excluded(err.Error()) {
				t.Errorf("VMA %#x excluded: error %v", drop.Addr, err)
			}
			byAddr := map[uint64]VMA{}
			for _, v := range vmas {
				byAddr[v.Addr] = v
			}
			for _, v := range got {
				w, ok := byAddr[v.Addr]
				nameOK := v.Name == w.Name || v.Name == "" && excluded(v.NameErr)
				if !ok || v.Start != w.Start || v.End != w.End || v.Flags != w.Flags || v.PgOff != w.PgOff || v.File != w.File || !nameOK || v.Addr == drop.Addr {
					t.Errorf("VMA %+v, the full dump's %+v", v, w)
				}
			}
			if len(got) >= len(vmas) {
				t.Errorf("%d VMAs with %#x excluded, %d in the full dump", len(got), drop.Addr, len(vmas))
			}
			t.Logf("VMA %#x excluded: %d of %d VMAs read (%v)", drop.Addr, len(got), len(vmas), err)

			// An open file's struct file.
			var file uint64
			for _, f := range ft.Files {
				if !keep[pageOf(f.File)] {
					file = f.File
					break
				}
			}
			if file == 0 {
				t.Fatal("every struct file shares a page with the task or its mm")
			}
			k = loadPaths(t, set, fixtures.ExcludePages(t, set.Path(t, "oom", "vmcore.lzo"), []uint64{pageOf(file)}))
			ft2, err := k.Files(taskByPID(t, k, 1))
			if err != nil && !excluded(err.Error()) {
				t.Fatalf("files with struct file %#x excluded: %v", file, err)
			}
			want := map[int]OpenFile{}
			for _, f := range ft.Files {
				want[f.FD] = f
			}
			lost := 0
			for _, f := range ft2.Files {
				w, ok := want[f.FD]
				switch {
				case !ok || f.File != w.File:
					t.Errorf("fd %d: %+v, the full dump's %+v", f.FD, f, w)
				case f.Err != "":
					lost++
					if !excluded(f.Err) || f.Path != "" {
						t.Errorf("fd %d: path %q, %s", f.FD, f.Path, f.Err)
					}
				case f.Path != w.Path || f.Dentry != w.Dentry || f.Inode != w.Inode || f.Mode != w.Mode:
					t.Errorf("fd %d: %+v, the full dump's %+v", f.FD, f, w)
				}
			}
			if lost == 0 {
				t.Errorf("struct file %#x excluded, no fd says so: %+v", file, ft2.Files)
			}
		})
	}
}
