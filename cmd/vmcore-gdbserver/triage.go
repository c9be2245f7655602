package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/triage"
)

// newTriageCmds makes one subcommand per triage command; each opens the
// dump, builds the kernel model and prints text or JSON.
func newTriageCmds() []*cobra.Command {
	var cmds []*cobra.Command
	for _, c := range triage.Commands {
		if c.Name == "help" {
			continue
		}
		c := c
		var asJSON, all bool
		var pids []int
		cmd := &cobra.Command{
			Use:   c.Name + " [flags] VMLINUX VMCORE...",
			Short: c.Help,
			Long: c.Help + `.

The same command answers "monitor ` + c.Usage + `" inside a gdb session.`,
			Example: fmt.Sprintf("  vmcore-gdbserver %s vmlinux vmcore\n  vmcore-gdbserver %s --json vmlinux vmcore.1 vmcore.2", c.Name, c.Name),
			Args:    cobra.MinimumNArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				k, closeAll, err := openKernel(args[0], args[1:])
				if err != nil {
					return err
				}
				defer closeAll()
				t := &triage.Triage{K: k, Vmlinux: args[0], Dumps: args[1:]}
				argv := []string{c.Name}
				if all {
					argv = append(argv, "-a")
				}
				for _, p := range pids {
					argv = append(argv, strconv.Itoa(p))
				}
				return t.Run(argv, cmd.OutOrStdout(), asJSON)
			},
		}
		cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		if c.Name == "bt" {
			cmd.Flags().BoolVarP(&all, "all", "a", false, "every task")
			cmd.Flags().IntSliceVarP(&pids, "pid", "p", nil, "these pids (repeatable)")
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// Monitor answers gdb's `monitor CMD` with the triage commands, plus
// `info version`, which the kernel's gdb scripts send to recognise a
// server whose threads 1..N are the CPUs (as QEMU's are).
func (kt *kernelTarget) Monitor(cmd string, out io.Writer) error {
	args := strings.Fields(cmd)
	if len(args) >= 2 && args[0] == "info" && args[1] == "version" {
		_, err := fmt.Fprintf(out, "vmcore-gdbserver (kernel %s); gdb threads 1..%d are CPUs 0..%d\n", kt.k.Info.OSRelease, len(kt.k.CPUs), len(kt.k.CPUs)-1)
		return err
	}
	asJSON := false
	var rest []string
	for _, a := range args {
		if a == "--json" {
			asJSON = true
		} else {
			rest = append(rest, a)
		}
	}
	t := &triage.Triage{K: kt.k, Vmlinux: kt.vmlinux, Dumps: kt.dumps}
	return t.Run(rest, out, asJSON)
}
