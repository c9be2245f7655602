package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/debuginfod"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// debugRoot is where distributions install debug files, with the
// .build-id/xx/rest.debug links Fedora and RHEL packages make.
var debugRoot = "/usr/lib/debug" // a variable for tests

// locator finds the files of a dump that came without them: the vmlinux
// by the dump's build id (VMCOREINFO BUILD-ID), modules by the build ids
// read from memory; first where debug packages install them, then from
// the debuginfod servers of DEBUGINFOD_URLS.
type locator struct {
	client *debuginfod.Client // nil when DEBUGINFOD_URLS names no server
}

func newLocator(progress io.Writer) *locator {
	l := &locator{}
	if c, ok := debuginfod.FromEnv(); ok {
		c.Progress = progress
		l.client = c
	}
	return l
}

// buildIDPath is the debug file a .build-id link names.
func buildIDPath(id string) string {
	return filepath.Join(debugRoot, ".build-id", id[:2], id[2:]+".debug")
}

// hasBuildID says whether path is an ELF file with that build id.
func hasBuildID(path, id string) bool {
	f, _, err := rofile.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	got, err := symbols.ELFBuildID(f)
	return err == nil && got == id
}

func sameBanner(d *vmcore.Dump, path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	v, err := symbols.Open(path)
	if err != nil {
		return false
	}
	defer v.Close()
	ok, err := kernel.SameBanner(d, v)
	return err == nil && ok
}

// vmlinux returns the path of the dump's vmlinux and where it was found.
// err explains, in one line, every place that was tried.
func (l *locator) vmlinux(d *vmcore.Dump, info *vmcore.VMCOREINFO) (path, from string, err error) {
	id := strings.ToLower(info.BuildID)
	var local []string
	if debuginfod.ValidBuildID(id) {
		local = append(local, buildIDPath(id))
	}
	// A release with a slash would name another directory.
	if r := info.OSRelease; r != "" && !strings.ContainsAny(r, "/\x00") && r != "." && r != ".." {
		local = append(local,
			filepath.Join(debugRoot, "boot", "vmlinux-"+r),           // Debian, Ubuntu
			filepath.Join(debugRoot, "lib", "modules", r, "vmlinux"), // Fedora, RHEL, SUSE
			filepath.Join("/boot", "vmlinux-"+r))
	}
	for _, p := range local {
		if id != "" && hasBuildID(p, id) {
			return p, "found by build id", nil
		}
	}
	if id == "" {
		// No build id (kernels before 5.9): a file named for the release
		// is taken only if its linux_banner is the one in the dump.
		for _, p := range local {
			if sameBanner(d, p) {
				return p, "its linux_banner is the dump's", nil
			}
		}
		return "", "", fmt.Errorf("the dump's VMCOREINFO has no BUILD-ID to find its vmlinux by, and no vmlinux of release %q with the dump's linux_banner is in %s/boot, %s/lib/modules or /boot", info.OSRelease, debugRoot, debugRoot)
	}
	if !debuginfod.ValidBuildID(id) {
		return "", "", fmt.Errorf("the dump's VMCOREINFO BUILD-ID %q is not a hex build id", info.BuildID)
	}
	tried := fmt.Sprintf("no vmlinux with build id %s in %s, %s/boot or /boot", id, filepath.Dir(filepath.Dir(buildIDPath(id))), debugRoot)
	if l.client == nil {
		return "", "", fmt.Errorf("%s, and DEBUGINFOD_URLS names no server", tried)
	}
	p, err := l.client.Fetch(context.Background(), id, debuginfod.Debuginfo, "vmlinux "+info.OSRelease)
	if err != nil {
		return "", "", fmt.Errorf("%s; %w", tried, err)
	}
	return p, "from debuginfod", nil
}

// module returns a file for the module of that build id: its debug file
// where packages install it, or from debuginfod (the debuginfo, which for
// a kernel module is the whole .ko with DWARF).
func (l *locator) module(name, buildID string) (string, error) {
	id := strings.ToLower(buildID)
	if !debuginfod.ValidBuildID(id) {
		return "", fmt.Errorf("the module's build id is not in the dump")
	}
	if p := buildIDPath(id); hasBuildID(p, id) {
		return p, nil
	}
	if l.client == nil {
		return "", fmt.Errorf("not in %s by build id %s, and DEBUGINFOD_URLS names no server", debugRoot, id)
	}
	p, err := l.client.Fetch(context.Background(), id, debuginfod.Debuginfo, "module "+name)
	if errors.Is(err, debuginfod.ErrNotFound) {
		// Some servers index a module only as an executable.
		if p2, err2 := l.client.Fetch(context.Background(), id, debuginfod.Executable, "module "+name); err2 == nil {
			return p2, nil
		}
	}
	return p, err
}
