package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// gdbIndexDir makes base/vmcore-gdbserver/gdb-index mode 0700 and refuses
// one that someone else could replace or fill.
func TestGDBIndexDir(t *testing.T) {
	base := t.TempDir()
	dir, err := gdbIndexDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, "vmcore-gdbserver", "gdb-index"); dir != want {
		t.Errorf("dir %s, want %s", dir, want)
	}
	for _, p := range []string{dir, filepath.Dir(dir)} {
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a directory mode 0700", p, fi.Mode(), err)
		}
	}
	// Once made, it is found again.
	if again, err := gdbIndexDir(base); err != nil || again != dir {
		t.Errorf("second call: %q %v", again, err)
	}

	// A link of ours on the way is followed; the result is the real path.
	real := t.TempDir()
	linked := filepath.Join(t.TempDir(), "cache")
	if err := os.Symlink(real, linked); err != nil {
		t.Fatal(err)
	}
	if d, err := gdbIndexDir(linked); err != nil || d != filepath.Join(real, "vmcore-gdbserver", "gdb-index") {
		t.Errorf("through a link: %q %v", d, err)
	}

	refused := func(name string, base string) {
		t.Helper()
		if d, err := gdbIndexDir(base); err == nil {
			t.Errorf("%s: accepted %s", name, d)
		}
	}
	// gdb-index itself a link (to a directory someone else chose).
	b := t.TempDir()
	os.MkdirAll(filepath.Join(b, "vmcore-gdbserver"), 0o700)
	target := t.TempDir()
	os.Symlink(target, filepath.Join(b, "vmcore-gdbserver", "gdb-index"))
	refused("gdb-index a link", b)
	// A directory others can write on the way.
	b = t.TempDir()
	os.Mkdir(filepath.Join(b, "vmcore-gdbserver"), 0o700)
	os.Chmod(filepath.Join(b, "vmcore-gdbserver"), 0o777)
	refused("vmcore-gdbserver mode 0777", b)
	if _, err := os.Lstat(filepath.Join(b, "vmcore-gdbserver", "gdb-index")); err == nil {
		t.Error("gdb-index made under a directory others can write")
	}
	refused("relative base", "cache")
	refused("newline in the name", filepath.Join(t.TempDir(), "a\nb"))

	if os.Geteuid() != 0 {
		t.Log("not root: the other-owner cases need chown")
		return
	}
	const nobody = 65534
	// Root on a shared machine with HOME another user's: that user's
	// cache directory is not written.
	b = t.TempDir()
	home := filepath.Join(b, "home")
	os.Mkdir(home, 0o755)
	os.Chown(home, nobody, nobody)
	refused("base owned by another user", home)
	if _, err := os.Lstat(filepath.Join(home, "vmcore-gdbserver")); err == nil {
		t.Error("vmcore-gdbserver made in another user's directory")
	}
	b = t.TempDir()
	os.MkdirAll(filepath.Join(b, "vmcore-gdbserver", "gdb-index"), 0o700)
	os.Chown(filepath.Join(b, "vmcore-gdbserver", "gdb-index"), nobody, nobody)
	refused("gdb-index owned by another user", b)
	b = t.TempDir()
	os.MkdirAll(filepath.Join(b, "vmcore-gdbserver", "gdb-index"), 0o700)
	os.Chown(filepath.Join(b, "vmcore-gdbserver"), nobody, nobody)
	refused("vmcore-gdbserver owned by another user", b)
}

var indexStats = regexp.MustCompile(`(?m)^\s*Cache hits \(this session\): (\d+)\s*\n\s*Cache misses \(this session\): (\d+)`)

// wrapperIndexSession runs `vmcore-gdbserver gdb` in batch mode with
// XDG_CACHE_HOME=cache and the index mode given, and returns gdb's index
// cache directory, hits and misses, and the whole output.
func wrapperIndexSession(t *testing.T, f gdbFixture, cache, mode string) (string, int, int, string) {
	t.Helper()
	args := append([]string{"gdb", f.vmlinux(t)}, f.paths(t)...)
	args = append(args, "--", "-batch", "-nx", "-ex", "show index-cache directory", "-ex", "show index-cache stats")
	cmd := exec.Command(cliBinary, args...)
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache, gdbIndexEnv+"="+mode)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, tail(out, 30))
	}
	dir := regexp.MustCompile(`The directory of the index cache is "([^"]*)"`).FindStringSubmatch(out)
	m := indexStats.FindStringSubmatch(out)
	if dir == nil || m == nil {
		t.Fatalf("no index cache directory or stats:\n%s", tail(out, 30))
	}
	hits, _ := strconv.Atoi(m[1])
	misses, _ := strconv.Atoi(m[2])
	return dir[1], hits, misses, out
}

// The gdb subcommand turns gdb's index cache on before the vmlinux is
// loaded, in the user's cache directory: a first session without an index
// misses and writes <build-id>.gdb-index, the next one reads it; by
// default a first session has the index written before it starts, so it
// reads one too.
func TestGDBWrapperIndexCache(t *testing.T) {
	requireGDB(t)
	f := gdbFixtures[0]
	id, err := elfBuildID(f.vmlinux(t))
	if err != nil || len(id) != 40 {
		t.Fatalf("build id %q: %v", id, err)
	}
	cache, _ := filepath.EvalSymlinks(t.TempDir())
	want := filepath.Join(cache, "vmcore-gdbserver", "gdb-index")

	// The session's own gdb writes the index (no batch gdb before it).
	dir, hits, misses, out := wrapperIndexSession(t, f, cache, "cache")
	if dir != want {
		t.Errorf("index cache directory %q, want %q", dir, want)
	}
	// A miss is counted only for a file loaded with the cache on.
	if hits != 0 || misses < 1 {
		t.Errorf("cold session: %d hits, %d misses; want 0 and at least 1 (the vmlinux)", hits, misses)
	}
	if strings.Contains(out, "writing gdb's index") {
		t.Errorf("%s=cache wrote the index first:\n%s", gdbIndexEnv, tail(out, 30))
	}
	index := filepath.Join(want, id+".gdb-index")
	fi, err := os.Stat(index)
	if err != nil {
		t.Fatalf("the first session wrote no index: %v", err)
	}
	if fi.Size() < 1<<20 || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s: %d bytes, mode %v", index, fi.Size(), fi.Mode())
	}

	// The second session reads it; nothing is written first.
	_, hits, _, out = wrapperIndexSession(t, f, cache, "")
	if hits < 1 {
		t.Errorf("second session: %d hits, want the vmlinux's index read", hits)
	}
	if strings.Contains(out, "writing gdb's index") {
		t.Errorf("the index was written again:\n%s", tail(out, 30))
	}

	// Default, empty cache: the index is written before the session,
	// which then reads it; nothing temporary stays.
	cache2, _ := filepath.EvalSymlinks(t.TempDir())
	_, hits, _, out = wrapperIndexSession(t, f, cache2, "")
	if !strings.Contains(out, "writing gdb's index") || hits < 1 {
		t.Errorf("first default session: %d hits, want the index written first and read:\n%s", hits, tail(out, 30))
	}
	ents, _ := os.ReadDir(filepath.Join(cache2, "vmcore-gdbserver", "gdb-index"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != id+".gdb-index" {
		t.Errorf("index directory holds %v, want only %s.gdb-index", names, id)
	}

	// Off: no index cache at all.
	cache3 := t.TempDir()
	_, hits, misses, _ = wrapperIndexSession(t, f, cache3, "off")
	if hits != 0 || misses != 0 {
		t.Errorf("%s=off: %d hits, %d misses", gdbIndexEnv, hits, misses)
	}
	if _, err := os.Lstat(filepath.Join(cache3, "vmcore-gdbserver")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s=off made the cache directory (%v)", gdbIndexEnv, err)
	}
}
