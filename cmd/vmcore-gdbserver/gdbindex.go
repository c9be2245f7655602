package main

// gdb's index cache for the `gdb` subcommand. gdb 13 indexes a vmlinux's
// DWARF when it loads it; without an index file the first command that
// looks a kernel type up by name (`ptype struct task_struct`) waits for
// that work and then searches the slow way (38-54 s on the 590 MB Debian
// 6.1 vmlinux), with one it takes 3-4 s (README, Speed). gdb writes the
// index of a file it loaded with the cache enabled (`set index-cache
// enabled on`, before the file is loaded) as <build-id>.gdb-index into the
// cache directory, through a temporary file renamed into place, and reads
// it in later sessions. The wrapper keeps that cache under the user's
// cache directory and, when the vmlinux has no index there yet, has a
// batch gdb write it before the session starts (4-9 s), so that even the
// first session reads one.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// gdbIndexEnv chooses what the gdb subcommand does with gdb's index
// cache: unset or empty, the cache and, when the vmlinux has no index in
// it, the index built before the session; "cache", the cache alone (the
// session's own gdb writes the index, its first type lookup is slow);
// "off", neither.
const gdbIndexEnv = "VMCORE_GDBSERVER_GDB_INDEX"

// gdbIndexPrebuildTimeout bounds the batch gdb that writes the index; past
// it the session starts without.
const gdbIndexPrebuildTimeout = 5 * time.Minute

// gdbIndexDir returns base/vmcore-gdbserver/gdb-index, with every symbolic
// link of its existing part resolved, creating what is missing mode 0700.
// It refuses a directory another user could replace or fill: the index
// directory must be a real directory (not a link) owned by this user,
// and every directory above it owned by this user or root and writable by
// no one else (sticky directories such as /tmp excepted, where nobody
// else can rename an entry). gdb runs as root on shared machines: it must
// never write where someone else can plant a link.
func gdbIndexDir(base string) (string, error) {
	if !filepath.IsAbs(base) {
		return "", fmt.Errorf("the cache directory %q is not an absolute path", base)
	}
	want := filepath.Join(base, "vmcore-gdbserver", "gdb-index")
	// gdb takes the rest of the `set index-cache directory` line as the
	// name, trailing blanks dropped.
	if strings.ContainsFunc(want, unicode.IsControl) || strings.TrimRightFunc(want, unicode.IsSpace) != want {
		return "", fmt.Errorf("%q: a control character or trailing blank in the name", want)
	}
	if fi, err := os.Lstat(want); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("%s is a symbolic link", want)
	}
	// The longest part of the path that exists.
	existing, missing := want, []string(nil)
	for {
		_, err := os.Lstat(existing)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return "", err
		}
		missing = append([]string{filepath.Base(existing)}, missing...)
		existing = parent
	}
	resolved, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", err
	}
	// A link in a directory only trusted users can write stays put;
	// what it leads to is checked as the resolved path.
	for p := resolved; ; p = filepath.Dir(p) {
		if err := trustedDir(p); err != nil {
			return "", err
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	dir := resolved
	for _, m := range missing {
		dir = filepath.Join(dir, m)
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		if err := trustedDir(dir); err != nil {
			return "", err
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("%s is not owned by this user (uid %d)", dir, os.Geteuid())
	}
	return dir, nil
}

// trustedDir fails unless p is a directory (not a link to one) that no
// user but this one and root can change entries of.
func trustedDir(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link", p)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", p)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner", p)
	}
	if uid := int(st.Uid); uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("%s is owned by uid %d", p, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%s is writable by other users (mode %04o)", p, fi.Mode().Perm())
	}
	return nil
}

// elfBuildID is the GNU build id of an ELF file in lowercase hex, as gdb
// names its index cache files, or "" when it has none.
func elfBuildID(path string) (string, error) {
	f, _, err := rofile.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	id, err := symbols.ELFBuildID(f)
	if errors.Is(err, symbols.ErrNoBuildID) {
		return "", nil
	}
	return id, err
}

// gdbIndexFile is where gdb 13 keeps the index of the file with that build
// id in the cache directory dir.
func gdbIndexFile(dir, buildID string) string {
	return filepath.Join(dir, buildID+".gdb-index")
}

// gdbIndexArgs are the options that turn gdb's index cache on in dir;
// they must come before the file is loaded (-iex).
func gdbIndexArgs(dir string) []string {
	return []string{"-iex", "set index-cache enabled on", "-iex", "set index-cache directory " + dir}
}

// prebuildGDBIndex has a batch gdb load the vmlinux with the index cache
// on, which writes its index, and moves that index into dir as
// dir/<buildID>.gdb-index. gdb writes into a private directory inside dir
// made for it and removed after, so a gdb that is stopped halfway leaves
// nothing behind, and the index appears by one rename, whole (two
// wrappers at once each rename an identical file). It waits at most
// gdbIndexPrebuildTimeout. A signal that arrives on sigs ends that gdb:
// SIGINT (Ctrl-C) skips the index, any other is returned as stop, for the
// caller to end too.
func prebuildGDBIndex(gdbPath, dir, buildID, vmlinux string, sigs <-chan os.Signal) (stop os.Signal, err error) {
	tmp, err := os.MkdirTemp(dir, ".prebuild-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"-q", "-batch", "-nx", "-iex", "set auto-load off"}, gdbIndexArgs(tmp)...)
	// A positional file name is taken as it is (vmlinux is absolute).
	args = append(args, vmlinux)
	c := exec.Command(gdbPath, args...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	timeout := time.NewTimer(gdbIndexPrebuildTimeout)
	defer timeout.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
			}
			written := gdbIndexFile(tmp, buildID)
			if _, err := os.Stat(written); err != nil {
				return nil, fmt.Errorf("gdb wrote no %s (is it gdb 13?); %s=cache skips this step", filepath.Base(written), gdbIndexEnv)
			}
			return nil, os.Rename(written, gdbIndexFile(dir, buildID))
		case sig := <-sigs:
			c.Process.Kill()
			<-done
			if sig == syscall.SIGINT {
				return nil, errors.New("interrupted")
			}
			return sig, nil
		case <-timeout.C:
			c.Process.Kill()
			<-done
			return nil, fmt.Errorf("not done within %v", gdbIndexPrebuildTimeout)
		}
	}
}

// gdbIndexSetup returns the gdb options of the session's index cache (none
// when it is off or its directory is refused, which is said on stderr),
// first writing the vmlinux's index when the cache has none for it (see
// gdbIndexEnv). vmlinux is absolute. A SIGTERM or SIGHUP while the index
// is written is returned as an error: the session must not start.
func gdbIndexSetup(gdbPath, vmlinux string, sigs <-chan os.Signal) ([]string, error) {
	mode := os.Getenv(gdbIndexEnv)
	switch mode {
	case "", "cache":
	case "off":
		return nil, nil
	default:
		fmt.Fprintf(os.Stderr, "vmcore-gdbserver: %s=%q is not one of \"\", cache or off; gdb's index cache stays off\n", gdbIndexEnv, mode)
		return nil, nil
	}
	dir, err := os.UserCacheDir()
	if err == nil {
		dir, err = gdbIndexDir(dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmcore-gdbserver: gdb's index cache is off: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return nil, nil
	}
	if mode == "" {
		id, err := elfBuildID(vmlinux)
		if err == nil && id != "" {
			if _, err := os.Stat(gdbIndexFile(dir, id)); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(os.Stderr, "vmcore-gdbserver: writing gdb's index of this vmlinux into %s, once per kernel (some seconds; Ctrl-C skips it)\n", dir)
				start := time.Now()
				stop, err := prebuildGDBIndex(gdbPath, dir, id, vmlinux, sigs)
				if stop != nil {
					return nil, fmt.Errorf("stopped by %v while gdb wrote its index", stop)
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "vmcore-gdbserver: no index written: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				} else {
					fmt.Fprintf(os.Stderr, "vmcore-gdbserver: index written in %.1f s\n", time.Since(start).Seconds())
				}
			}
		}
	}
	return gdbIndexArgs(dir), nil
}
