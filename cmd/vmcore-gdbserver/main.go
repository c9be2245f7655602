// Command vmcore-gdbserver serves a Linux x86_64 crash dump to gdb and
// answers questions about it from the command line.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the CLI and turns every failure, including an internal
// panic, into one line on stderr: a user never sees a Go stack trace.
func run(args []string) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "vmcore-gdbserver: internal error: %v (please report it with the dump's `info` output)\n", r)
			code = 2
		}
	}()
	root := newRootCmd()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		fmt.Fprintf(os.Stderr, "vmcore-gdbserver: %s\n", msg)
		return 1
	}
	return 0
}

// withFiles makes sure an error names the files it is about: errors from
// deeper down (no VMCOREINFO, no task, a build id mismatch) may name none.
func withFiles(err error, files ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, f := range files {
		if f != "" && strings.Contains(msg, f) {
			return err
		}
	}
	var named []string
	for _, f := range files {
		if f != "" {
			named = append(named, f)
		}
	}
	return fmt.Errorf("%s: %w", strings.Join(named, ", "), err)
}
