// Package privdir checks the directories vmcore-gdbserver writes into
// (decompressed modules, downloaded debug files): root runs it on shared
// machines, so a directory another user can write, list or swap for a
// link could get files planted in it or read from it.
package privdir

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrUnsafe marks a directory that is not this user's alone.
var ErrUnsafe = errors.New("unsafe directory")

// Check accepts only a real directory (not a link to one) owned by this
// user that group and others cannot access at all.
func Check(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: not a directory (%v)", ErrUnsafe, st.Mode().Type())
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: its owner is unknown", ErrUnsafe)
	}
	if int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: owned by uid %d, not by this user", ErrUnsafe, sys.Uid)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: mode %v, want no access for group and others", ErrUnsafe, st.Mode().Perm())
	}
	return nil
}

// MkdirAll makes dir and its missing parents (mode 0700) and checks dir.
func MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return Check(dir)
}
