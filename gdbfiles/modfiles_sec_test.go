package gdbfiles

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// compressCLI compresses data with Debian's xz or zstd (real files, made
// the way kmod's tools make them) and writes dir/name.
func compressCLI(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	var cmd *exec.Cmd
	switch {
	case strings.HasSuffix(name, ".zst"):
		cmd = exec.Command("zstd", "-q", "-c", "-19")
	case strings.HasSuffix(name, ".xz"):
		cmd = exec.Command("xz", "-c", "-T1")
	default:
		t.Fatalf("compressCLI %s", name)
	}
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomModule(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b[n/2:]) // half random, half zeros: compressible, unique
	return b
}

// regularFiles lists the regular files under dir.
func regularFiles(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// Decompression bombs stop at the size cap, are streamed (memory stays
// far below the output size), leave no file behind, and the error names
// the file and the cap.
func TestModuleFilesBombs(t *testing.T) {
	dir := t.TempDir()
	// zstd: one frame from a 2 GiB sparse file of zeros, so the header
	// declares the 2 GiB content size.
	sparse := filepath.Join(dir, "zeros")
	if err := os.WriteFile(sparse, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 2<<30); err != nil {
		t.Fatal(err)
	}
	mods := filepath.Join(dir, "mods")
	os.MkdirAll(mods, 0o755)
	if out, err := exec.Command("zstd", "-q", "-1", "-o", filepath.Join(mods, "zbomb.ko.zst"), sparse).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v %s", err, out)
	}
	// zstd frames without a content size (compressed from a pipe), and
	// xz streams: 32 concatenated ones of 64 MiB of zeros each, 2 GiB in
	// all (both decoders take concatenated frames as one file;
	// compressing 2 GiB at once with xz would take half a minute).
	zero, _ := os.Open("/dev/zero")
	defer zero.Close()
	for _, c := range []struct {
		name string
		argv []string
	}{{"zstream.ko.zst", []string{"zstd", "-q", "-1", "-c"}}, {"xbomb.ko.xz", []string{"xz", "-c", "-1", "-T1"}}} {
		cmd := exec.Command(c.argv[0], c.argv[1:]...)
		cmd.Stdin = io.LimitReader(zero, 64<<20)
		one, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(mods, c.name), bytes.Repeat(one, 32), 0o644)
	}
	// Incompressible data over a small MaxSize: the absolute cap.
	big := make([]byte, 3<<20)
	rand.Read(big[:700<<10]) // compresses to under 1 MiB
	compressCLI(t, mods, "big.ko.xz", big)

	cache := filepath.Join(dir, "cache")
	files := &ModuleFiles{Dirs: []string{mods}, CacheDir: cache}
	small := &ModuleFiles{Dirs: []string{mods}, CacheDir: cache, MaxSize: 1 << 20}
	for _, c := range []struct {
		name  string
		files *ModuleFiles
		cap   string
	}{{"zbomb", files, "100 times the compressed"}, {"zstream", files, "100 times the compressed"}, {"xbomb", files, "100 times the compressed"}, {"big", small, "at most 1 MiB"}} {
		name := c.name
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			p, err := c.files.Find(name)
			runtime.ReadMemStats(&after)
			if err == nil || !errors.Is(err, ErrModuleTooLarge) {
				t.Fatalf("Find(%s) = %q, %v; want ErrModuleTooLarge", name, p, err)
			}
			if !strings.Contains(err.Error(), filepath.Join(mods, name)) || !strings.Contains(err.Error(), c.cap) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q does not name the file and the cap in one line", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 128<<20 {
				t.Errorf("decompressing the bomb allocated %d MiB: not streamed", alloc>>20)
			}
			if left := regularFiles(cache); len(left) != 0 {
				t.Errorf("files left behind: %v", left)
			}
			t.Logf("%s refused in %v", name, time.Since(start))
		})
	}
}

// Links planted where the old code wrote (a shared, fixed directory under
// the temp dir) or in a caller's cache directory are never followed, and
// a planted output is never served.
func TestModuleFilesPlantedLinks(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	victim := filepath.Join(tmp, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	data := randomModule(t, 1<<16)
	mods := filepath.Join(tmp, "mods")
	compressCLI(t, mods, "qemu_fw_cfg.ko.zst", data)
	compressCLI(t, mods, "virtio_blk.ko.xz", data)

	old := filepath.Join(tmp, "vmcore-gdbserver-modules")
	os.Mkdir(old, 0o777)
	for _, n := range []string{"qemu_fw_cfg.ko", "qemu_fw_cfg.ko.tmp", "virtio_blk.ko", "virtio_blk.ko.tmp"} {
		if err := os.Symlink(victim, filepath.Join(old, n)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, files *ModuleFiles) []string {
		var paths []string
		for _, name := range []string{"qemu_fw_cfg", "virtio_blk"} {
			p, err := files.Find(name)
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Lstat(p)
			if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v, want a regular 0600 file", p, st, err)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
				t.Fatalf("%s is not the decompressed module", p)
			}
			if strings.HasPrefix(p, old+"/") {
				t.Fatalf("%s is in the shared directory", p)
			}
			paths = append(paths, p)
		}
		if got, _ := os.ReadFile(victim); string(got) != "precious" {
			t.Fatalf("the link target was overwritten: %q", got)
		}
		return paths
	}

	t.Run("private", func(t *testing.T) {
		files := &ModuleFiles{Dirs: []string{mods}}
		paths := check(t, files)
		dir := filepath.Dir(filepath.Dir(paths[0]))
		st, err := os.Lstat(dir)
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Fatalf("private dir %s: %v %v", dir, st, err)
		}
		if err := files.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Close left %s: %v", dir, err)
		}
		if _, err := os.Lstat(old); err != nil {
			t.Fatalf("Close removed what it did not create: %v", err)
		}
	})

	t.Run("cachedir", func(t *testing.T) {
		cache := filepath.Join(tmp, "cache")
		// Learn the output paths, then plant links at them and at every
		// name beside them, and decompress again in a new ModuleFiles.
		first := check(t, &ModuleFiles{Dirs: []string{mods}, CacheDir: cache})
		for _, p := range first {
			os.Remove(p)
			for _, n := range []string{p, p + ".tmp", p + ".tmp-1"} {
				if err := os.Symlink(victim, n); err != nil {
					t.Fatal(err)
				}
			}
		}
		second := check(t, &ModuleFiles{Dirs: []string{mods}, CacheDir: cache})
		if strings.Join(first, " ") != strings.Join(second, " ") {
			t.Errorf("same content, different outputs: %v %v", first, second)
		}
	})
}

// A cache directory someone else could write to, or a link, is refused.
func TestModuleFilesUnsafeCacheDir(t *testing.T) {
	tmp := t.TempDir()
	mods := filepath.Join(tmp, "mods")
	compressCLI(t, mods, "m.ko.zst", randomModule(t, 4096))
	open := filepath.Join(tmp, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	real := filepath.Join(tmp, "real")
	os.Mkdir(real, 0o700)
	link := filepath.Join(tmp, "link")
	os.Symlink(real, link)
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, nil, 0o600)
	cases := []struct{ name, dir, want string }{
		{"world-writable", open, "mode"},
		{"symlink", link, "not a directory"},
		{"file", file, "not a directory"},
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(tmp, "other")
		os.Mkdir(other, 0o700)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ name, dir, want string }{"other owner", other, "owned by uid 65534"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := &ModuleFiles{Dirs: []string{mods}, CacheDir: c.dir}
			_, err := files.Find("m")
			if !errors.Is(err, ErrUnsafeCacheDir) || !strings.Contains(err.Error(), c.dir) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CacheDir %s: %v", c.dir, err)
			}
			if left := regularFiles(real); len(left) != 0 {
				t.Fatalf("wrote through the link: %v", left)
			}
		})
	}
}

// Two modules of one name from different kernels (two dumps' module
// directories) never share an output, whether the sessions share a cache
// directory or not.
func TestModuleFilesSameNameDifferentContent(t *testing.T) {
	tmp := t.TempDir()
	a, b := randomModule(t, 1<<15), randomModule(t, 1<<15)
	compressCLI(t, filepath.Join(tmp, "6.1"), "qemu_fw_cfg.ko.zst", a)
	compressCLI(t, filepath.Join(tmp, "6.12"), "qemu_fw_cfg.ko.zst", b)
	compressCLI(t, filepath.Join(tmp, "6.1"), "virtio_blk.ko.xz", a)
	compressCLI(t, filepath.Join(tmp, "6.12"), "virtio_blk.ko.xz", b)
	for _, cache := range []string{"", filepath.Join(tmp, "cache")} {
		fa := &ModuleFiles{Dirs: []string{filepath.Join(tmp, "6.1")}, CacheDir: cache}
		fb := &ModuleFiles{Dirs: []string{filepath.Join(tmp, "6.12")}, CacheDir: cache}
		for _, name := range []string{"qemu_fw_cfg", "virtio_blk"} {
			pa, err1 := fa.Find(name)
			pb, err2 := fb.Find(name)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			ga, _ := os.ReadFile(pa)
			gb, _ := os.ReadFile(pb)
			if pa == pb || !bytes.Equal(ga, a) || !bytes.Equal(gb, b) {
				t.Fatalf("cache %q %s: %s and %s hold the wrong modules", cache, name, pa, pb)
			}
		}
		fa.Close()
		fb.Close()
	}
}

// Many goroutines asking for the same modules at once get one
// decompression each, all the same path, complete (run with -race).
func TestModuleFilesConcurrent(t *testing.T) {
	tmp := t.TempDir()
	data := randomModule(t, 1<<20)
	mods := filepath.Join(tmp, "mods")
	compressCLI(t, mods, "qemu_fw_cfg.ko.zst", data)
	compressCLI(t, mods, "virtio_blk.ko.xz", data)
	files := &ModuleFiles{Dirs: []string{mods}}
	defer files.Close()
	const n = 8
	paths := make([]string, 2*n)
	var wg sync.WaitGroup
	for i := range paths {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := []string{"qemu_fw_cfg", "virtio_blk"}[i%2]
			p, err := files.Find(name)
			if err != nil {
				t.Error(err)
				return
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
				t.Errorf("%s incomplete (%d bytes)", p, len(got))
			}
			paths[i] = p
		}(i)
	}
	wg.Wait()
	for i := 2; i < len(paths); i++ {
		if paths[i] != paths[i%2] {
			t.Fatalf("two paths for one module: %s %s", paths[i], paths[i%2])
		}
	}
	dir := filepath.Dir(filepath.Dir(paths[0]))
	if left := regularFiles(dir); len(left) != 2 {
		t.Fatalf("want exactly the two modules, found %v", left)
	}
}

// A FIFO named like a module is never opened (it would block forever):
// the walk skips it and the next directory's regular file is found.
func TestModuleFilesFIFO(t *testing.T) {
	tmp := t.TempDir()
	first, second := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	os.MkdirAll(first, 0o755)
	for _, n := range []string{"virtio_blk.ko", "qemu_fw_cfg.ko.zst"} {
		if err := syscall.Mkfifo(filepath.Join(first, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(second, 0o755)
	os.WriteFile(filepath.Join(second, "virtio_blk.ko"), []byte("x"), 0o644)
	files := &ModuleFiles{Dirs: []string{first, second}}
	defer files.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if p, err := files.Find("virtio_blk"); err != nil || p != filepath.Join(second, "virtio_blk.ko") {
			t.Errorf("virtio_blk: %q %v", p, err)
		}
		if p, err := files.Find("qemu_fw_cfg"); err == nil {
			t.Errorf("a FIFO was taken for qemu_fw_cfg: %s", p)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Find blocked on a FIFO")
	}
}

// A generated file (the unwind object) goes into the private directory,
// once per content: the same bytes give the same path, other bytes
// another; a link planted at its name is replaced, never followed; a name
// with a directory in it is refused; Close removes it all.
func TestWriteFileGenerated(t *testing.T) {
	f := &ModuleFiles{}
	data := []byte("unwind object")
	p1, err := f.WriteFile("orc-unwind.elf", data)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := f.WriteFile("orc-unwind.elf", data)
	if err != nil || p2 != p1 {
		t.Fatalf("second write: %s, %v (first %s)", p2, err, p1)
	}
	if got, err := os.ReadFile(p1); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content %q, %v", got, err)
	}
	dir := filepath.Dir(filepath.Dir(p1))
	if st, err := os.Lstat(dir); err != nil || st.Mode().Perm() != 0o700 || !st.IsDir() {
		t.Fatalf("private directory %s: %v %v", dir, st.Mode(), err)
	}
	other := []byte("another dump's object")
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	// Plant a link where the other content's file will go.
	h := sha256Hex(other)
	os.Mkdir(filepath.Join(dir, h[:32]), 0o700)
	if err := os.Symlink(victim, filepath.Join(dir, h[:32], "orc-unwind.elf")); err != nil {
		t.Fatal(err)
	}
	p3, err := f.WriteFile("orc-unwind.elf", other)
	if err != nil || p3 == p1 {
		t.Fatalf("other content: %s, %v", p3, err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Fatalf("the planted link was followed: victim holds %q", got)
	}
	if st, err := os.Lstat(p3); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("%s is not a regular file: %v", p3, err)
	}
	if _, err := f.WriteFile("../x", data); err == nil {
		t.Error("a name with a directory was accepted")
	}
	f.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s: %v", dir, err)
	}
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
