package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// The remote flow: gdb with no file of its own, in a directory with no
// kernel files, runs the server through a shell command (sh -c standing
// in for ssh) and loads the vmlinux and the modules (a decompressed one
// included) through the connection. Only those files: /etc/shadow, a
// ../ spelling, a link out of a module directory and /proc/self/environ
// are refused with EACCES, and the session goes on serving.
func TestGDBRemoteFiles(t *testing.T) {
	gdb := requireGDB(t)
	f := gdbFixtures[0]
	vmlinux, dumps := f.vmlinux(t), f.paths(t)
	names := loadedModules(t, vmlinux, dumps)
	mods := filepath.Join(t.TempDir(), "mods")
	os.Mkdir(mods, 0o755)
	plain := ""
	for _, name := range names {
		real := findModuleFile(t, name)
		if name == "qemu_fw_cfg" {
			// Compressed: served from the server's private copy.
			data, err := os.ReadFile(real)
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := zstd.NewWriter(nil)
			os.WriteFile(filepath.Join(mods, name+".ko.zst"), enc.EncodeAll(data, nil), 0o644)
			continue
		}
		// A link inside the set is the file the server opened.
		if err := os.Symlink(real, filepath.Join(mods, name+".ko")); err != nil {
			t.Fatal(err)
		}
		plain = name
	}
	os.Symlink("/etc", filepath.Join(mods, "out"))
	os.Symlink("/etc/passwd", filepath.Join(mods, "passwd.ko"))
	served := filepath.Join(mods, plain+".ko")
	work := t.TempDir() // no kernel files here, and where remote get writes
	refused := []string{
		"/etc/shadow",
		mods + "/../mods/" + plain + ".ko",
		served + "/../../../../../../etc/passwd",
		mods + "/out/passwd",
		mods + "/passwd.ko",
		"/proc/self/environ",
		"/proc/self/cwd" + vmlinux,
	}
	remote := "sh -c " + shellQuote("exec "+serverCmd(vmlinux, dumps, "-v", "--modules-dir", mods))
	args := []string{"-q", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0",
		"-ex", "target remote | " + remote,
		"-ex", "info threads", "-ex", "p jiffies_64", "-ex", "bt", "-ex", "info sharedlibrary",
		"-ex", "info symbol (unsigned long)&fw_cfg_sysfs_probe",
		"-ex", "remote get " + served + " got.ko"}
	for i, r := range refused {
		args = append(args, "-ex", "remote get "+r+" refused"+strconv.Itoa(i))
	}
	args = append(args, "-ex", "p jiffies_64")
	// Per-CPU symbols at their link addresses (the served view of the
	// vmlinux; TestGDBPerCPUNoFile does 6.12 and 4.18).
	sym, link, comm := perCPUCurrent(t, vmlinux)
	args = append(args, "-ex", "echo ==PERCPU==\\n", "-ex", "info threads 1-2", "-ex", "p/x (unsigned long)&"+sym, "-ex", comm(0), "-ex", comm(1))
	cmd := exec.Command(gdb, args...)
	cmd.Dir = work
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, tail(out, 40))
	}
	out, percpu, ok := strings.Cut(out, "==PERCPU==")
	if !ok {
		t.Fatalf("no per-CPU part:\n%s", tail(out, 20))
	}
	checkPerCPU(t, percpu, sym, link)
	if !strings.Contains(out, "Reading symbols from target:"+vmlinux) {
		t.Errorf("the vmlinux was not read through the connection:\n%s", grepLines(out, "symbols"))
	}
	if ts := parseThreads(out); len(ts) < 10 {
		t.Errorf("%d threads:\n%s", len(ts), tail(out, 40))
	}
	jiffies := strconv.FormatUint(dumpU64(t, f, "jiffies_64"), 10)
	vals := printValue.FindAllStringSubmatch(out, -1)
	if len(vals) != 2 || vals[0][1] != jiffies || vals[1][1] != jiffies {
		t.Errorf("jiffies_64 %v, the dump's %s (before and after the refusals)", vals, jiffies)
	}
	if fns := frameFuncs(out); !isSubsequence([]string{"panic"}, fns) {
		t.Errorf("bt %v has no panic", fns)
	}
	for _, name := range names {
		if !regexp.MustCompile(`Yes.*target:/.*/` + name + `\.ko`).MatchString(out) {
			t.Errorf("module %s not loaded through the connection:\n%s", name, grepLines(out, ".ko"))
		}
	}
	if !regexp.MustCompile(`fw_cfg_sysfs_probe in section \.text of target:/\S*/vmcore-gdbserver-modules-\S+/qemu_fw_cfg\.ko`).MatchString(out) {
		t.Errorf("the decompressed module's symbol is not placed in it:\n%s", grepLines(out, "fw_cfg_sysfs_probe"))
	}
	got, _ := os.ReadFile(filepath.Join(work, "got.ko"))
	want, _ := os.ReadFile(served)
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Errorf("remote get %s: %d bytes, the file has %d", served, len(got), len(want))
	}
	if n := strings.Count(out, "Remote I/O error: Permission denied"); n != len(refused) {
		t.Errorf("%d of %d refused with EACCES:\n%s", n, len(refused), grepLines(out, "Remote I/O"))
	}
	for i, r := range refused {
		if !strings.Contains(out, `vFile:open: "`+r+`": not a file this server opened for gdb`) {
			t.Errorf("no log line for %s", r)
		}
		if _, err := os.Stat(filepath.Join(work, "refused"+strconv.Itoa(i))); err == nil {
			if b, _ := os.ReadFile(filepath.Join(work, "refused"+strconv.Itoa(i))); len(b) > 0 {
				t.Errorf("remote get %s wrote %d bytes", r, len(b))
			}
		}
	}
}

// With its own copy of the vmlinux, gdb reads it locally: the connection
// carries the modules and a look at the vmlinux's build id, not the
// vmlinux.
func TestGDBLocalVmlinuxNotDownloaded(t *testing.T) {
	f := gdbFixtures[0]
	vmlinux := f.vmlinux(t)
	st, err := os.Stat(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	out := runCmd(t, requireGDB(t), "-q", "-batch", "-nx", vmlinux, "-ex", "target remote | "+serverCmd(vmlinux, f.paths(t), "--stats"), "-ex", "p jiffies_64")
	m := regexp.MustCompile(`stats: client stdio: .* (\d+) bytes sent`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no stats:\n%s", tail(out, 20))
	}
	sent, _ := strconv.ParseInt(m[1], 10, 64)
	if sent > st.Size()/20 {
		t.Errorf("%d bytes sent for a %d-byte vmlinux gdb has locally", sent, st.Size())
	}
	if strings.Contains(out, "Reading symbols from target:") {
		t.Errorf("symbols read through the connection:\n%s", grepLines(out, "symbols"))
	}
}
