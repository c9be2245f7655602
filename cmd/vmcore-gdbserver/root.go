package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vmcore-gdbserver",
		Short: "Look inside a crashed Linux kernel's memory dump",
		Long: `vmcore-gdbserver reads Linux x86_64 crash dumps (kdump ELF, makedumpfile's
compressed, flattened and split kdump files, QEMU dump-guest-memory) and
translates kernel addresses through the dumped page tables.

Dumps are opened read-only and recognised by content, not by name.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInfoCmd(), newReadCmd(), newServeCmd(), newGdbCmd())
	root.AddCommand(newTriageCmds()...)
	return root
}
