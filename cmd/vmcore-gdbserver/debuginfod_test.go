package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// startDebuginfod runs Debian's debuginfod over dirs of .deb archives (or
// none) on a free loopback port and waits until it has indexed them all.
// It returns the server's URL.
func startDebuginfod(t *testing.T, dirs ...string) string {
	t.Helper()
	bin, err := exec.LookPath("debuginfod")
	if err != nil {
		t.Fatal("debuginfod is required (Debian package debuginfod, installed by make fixtures): ", err)
	}
	if _, err := exec.LookPath("bsdtar"); err != nil {
		t.Fatal("bsdtar is required for debuginfod to read .deb files (Debian package libarchive-tools, installed by make fixtures): ", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	work := t.TempDir()
	args := []string{"-p", fmt.Sprint(port), "-d", filepath.Join(work, "db.sqlite"), "-t", "0", "-g", "0"}
	if len(dirs) > 0 {
		args = append(args, "-U")
		args = append(args, dirs...)
	} else {
		args = append(args, "-F", work)
	}
	cmd := exec.Command(bin, args...)
	// Its copies of files unpacked from the archives stay in the test's
	// directory, removed with it.
	cmd.Env = append(os.Environ(), "TMPDIR="+work)
	logf, _ := os.Create(filepath.Join(work, "log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	// Indexed: every archive scanned and no scan running or queued.
	want := fmt.Sprintf(`scanned_files_total{source=".deb archive"} %d`, len(dirs))
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := string(b)
		idle := strings.Contains(m, `thread_work_pending{role="scan"} 0`) && strings.Contains(m, `thread_busy{role="scan"} 0`)
		if idle && (len(dirs) == 0 || strings.Contains(m, want)) && strings.Contains(m, `thread_work_total{role="traverse"}`) {
			return url
		}
	}
	log, _ := os.ReadFile(filepath.Join(work, "log"))
	t.Fatalf("debuginfod did not index %v in 10 minutes:\n%s", dirs, tail(string(log), 20))
	return ""
}

// runCLIEnv runs the CLI with extra environment variables.
func runCLIEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cliBinary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

func fileBuildID(t *testing.T, path string) string {
	t.Helper()
	f, _, err := rofile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, err := symbols.ELFBuildID(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return id
}

// With nothing but the dump and DEBUGINFOD_URLS naming Debian's own
// debuginfod over the fixtures' -dbg packages, the triage commands and a
// file-less gdb session get the vmlinux and the modules by build id, and
// gdb, given the same server, fetches a module's debug information too.
func TestDebuginfod(t *testing.T) {
	sets := fixtures.Sets(t)
	var debs []string
	for _, s := range sets {
		debs = append(debs, filepath.Dir(s.Path(t, "debs", "kernel-dbg.deb")))
	}
	url := startDebuginfod(t, debs...)
	empty := startDebuginfod(t)
	for _, set := range sets {
		t.Run(set.Name, func(t *testing.T) {
			home := t.TempDir()
			env := []string{"DEBUGINFOD_URLS=" + url, "XDG_CACHE_HOME=" + filepath.Join(home, "cache"), "HOME=" + home}
			vmlinux, dump := set.Path(t, "kernel", "vmlinux"), set.Path(t, "oom", "vmcore.lzo")
			id := fileBuildID(t, vmlinux)
			cached := filepath.Join(home, "cache", "vmcore-gdbserver", "debuginfod", id, "debuginfo")

			want, _, code := runCLIEnv(t, nil, "bt", "-a", vmlinux, dump)
			if code != 0 {
				t.Fatalf("bt with the vmlinux: exit %d", code)
			}
			got, stderr, code := runCLIEnv(t, env, "bt", "-a", dump)
			if code != 0 || got != want {
				t.Fatalf("bt -a from the dump alone (exit %d) differs from bt -a with the vmlinux:\n%s\nstderr: %s", code, got, stderr)
			}
			if !strings.Contains(stderr, "vmlinux "+cached+" (from debuginfod)") || !strings.Contains(stderr, "debuginfod: downloading vmlinux") {
				t.Errorf("stderr does not say the vmlinux came from debuginfod:\n%s", stderr)
			}
			if fileBuildID(t, cached) != id {
				t.Fatalf("cached vmlinux has another build id")
			}
			if st, err := os.Stat(filepath.Dir(cached)); err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("cache directory mode %v (%v), want 0700", st.Mode().Perm(), err)
			}
			// The cache answers next time: no server is asked.
			dead := []string{"DEBUGINFOD_URLS=http://127.0.0.1:1", env[1], env[2]}
			if got, stderr, code := runCLIEnv(t, dead, "bt", "-a", dump); code != 0 || got != want {
				t.Fatalf("bt -a from the cache (exit %d) differs:\n%s", code, stderr)
			}

			// The gdb wrapper takes the dump alone too (the vmlinux from
			// the cache, given to gdb with add-symbol-file).
			gdbEnv := append(dead, "VMCORE_GDBSERVER_GDB_INDEX=off")
			if out, stderr, code := runCLIEnv(t, gdbEnv, "gdb", dump, "--", "-batch", "-iex", "set remotetimeout 60", "-ex", "info threads", "-ex", "p jiffies_64"); code != 0 || len(parseThreads(out)) < 10 || printValue.FindString(out) == "" {
				t.Errorf("vmcore-gdbserver gdb DUMP (exit %d):\n%s%s", code, tail(out, 10), stderr)
			}

			// A server without the file: one line naming the build id and
			// the server's answer, then the dump's own kallsyms and BTF.
			noenv := []string{"DEBUGINFOD_URLS=" + empty, "XDG_CACHE_HOME=" + filepath.Join(home, "cache2"), "HOME=" + home}
			out, stderr, code := runCLIEnv(t, noenv, "sys", dump)
			if code != 0 || !strings.Contains(out, "PANIC") {
				t.Fatalf("sys without a vmlinux: exit %d\n%s%s", code, out, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, id) || !strings.Contains(stderr, empty+": 404") ||
				!strings.Contains(stderr, "using the dump's own kallsyms and BTF") {
				t.Errorf("not one line naming the build id, the server's 404 and the fallback:\n%s", stderr)
			}

			// gdb with no file and no module directory: everything by build id.
			if set.Name != "6.1" {
				return
			}
			gdb := requireGDB(t)
			mods, _, code := runCLIEnv(t, nil, "mod", "--json", vmlinux, dump)
			names := regexp.MustCompile(`"name":\s*"([^"]+)"`).FindAllStringSubmatch(mods, -1)
			if code != 0 || len(names) < 2 {
				t.Fatalf("mod --json: exit %d, %d modules", code, len(names))
			}
			// `mod` fetches the modules' files (the first fetch from a
			// package archive can outlast gdb's wait for a reply).
			if out, stderr, code := runCLIEnv(t, env, "mod", dump); code != 0 || strings.Count(out, "/debuginfod/") != len(names) {
				t.Fatalf("mod (exit %d) does not name a fetched file for each of %d modules:\n%s%s", code, len(names), out, stderr)
			}
			server := "exec " + shellQuote(cliBinary) + " serve --stdio " + shellQuote(dump)
			args := append([]string{"-q", "-batch", "-nx"}, gdbSlowServer...)
			args = append(args, "-iex", "set sysroot", "-ex", "set pagination off", "-ex", "set width 0",
				"-ex", "target remote | "+server, "-ex", "info sharedlibrary", "-ex", "bt",
				"-ex", "ptype struct fw_cfg_sysfs_entry")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, gdb, args...)
			c.Dir = t.TempDir()
			c.Env = append(os.Environ(), env...)
			outb, err := c.CombinedOutput()
			gout := string(outb)
			if err != nil {
				t.Fatalf("gdb: %v\n%s", err, tail(gout, 40))
			}
			if !strings.Contains(gout, "Reading symbols from "+cached) {
				t.Errorf("gdb did not load the vmlinux the server fetched:\n%s", grepLines(gout, "symbols"))
			}
			if fns := frameFuncs(gout); !isSubsequence([]string{"panic"}, fns) {
				t.Errorf("bt %v has no panic", fns)
			}
			for _, n := range names {
				re := regexp.MustCompile(`Yes\s+` + regexp.QuoteMeta(filepath.Join(home, "cache", "vmcore-gdbserver", "debuginfod")) + `/[0-9a-f]+/debuginfo`)
				if !re.MatchString(gout) {
					t.Errorf("module %s not loaded from the debuginfod cache:\n%s", n[1], grepLines(gout, "debuginfo"))
					break
				}
			}
			if n := strings.Count(gout, "/debuginfod/"); n < len(names) {
				t.Errorf("%d libraries from the cache, %d modules loaded", n, len(names))
			}
			if !strings.Contains(gout, "u16 select;") {
				t.Errorf("a module's type is not known:\n%s", tail(gout, 20))
			}

			// gdb's own debuginfod client, same server: the debug
			// information of a stripped module, by its build id.
			stripped := findModuleFile(t, "qemu_fw_cfg")
			if strings.Contains(runCmd(t, "readelf", "-S", stripped), ".debug_info") {
				t.Fatalf("%s is not stripped", stripped)
			}
			gcache := t.TempDir()
			c = exec.CommandContext(ctx, gdb, "-q", "-batch", "-nx", "-iex", "set debuginfod enabled on", stripped, "-ex", "ptype struct fw_cfg_sysfs_entry")
			c.Env = append(os.Environ(), "DEBUGINFOD_URLS="+url, "DEBUGINFOD_CACHE_PATH="+gcache)
			outb, _ = c.CombinedOutput()
			if !strings.Contains(string(outb), "Downloading separate debug info") || !strings.Contains(string(outb), "u16 select;") {
				t.Errorf("gdb did not fetch the module's debug information:\n%s", outb)
			}
			if got := fileBuildID(t, filepath.Join(gcache, fileBuildID(t, stripped), "debuginfo")); got != fileBuildID(t, stripped) {
				t.Errorf("gdb's download has build id %s", got)
			}
		})
	}
}
