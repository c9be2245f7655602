package main

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbfiles"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/triage"
)

// newTriageCmds makes one subcommand per triage command; each opens the
// dump, builds the kernel model and prints text or JSON.
func newTriageCmds() []*cobra.Command {
	var cmds []*cobra.Command
	for _, c := range triage.Commands {
		if c.Name == "help" || c.Name == "foreach" { // foreach bt is bt -a here
			continue
		}
		c := c
		var asJSON, all, words, symbolic, physical, lines bool
		var userPID, jobs int
		var onePID int // vm, files: --pid
		var psUser, psKernel, psLeaders, logWall, kmemInfo, kmemZones, kmemSlabs bool
		operands := c.Name == "rd" || c.Name == "sym" || c.Name == "whatis" || c.Name == "struct"
		var pids, cpus []int
		var modDirs []string
		cmd := &cobra.Command{
			Use:   c.Name + " [flags] [VMLINUX] VMCORE...",
			Short: c.Help,
			Long: c.Help + `.

Without VMLINUX the symbols and types come from the dump itself (the
kernel's kallsyms and BTF, kernels 6.0+); what needs the vmlinux's debug
information (DWARF unwind data) is then done without it.
The same command answers "monitor ` + c.Usage + `" inside a gdb session.`,
			Example: fmt.Sprintf("  vmcore-gdbserver %s vmlinux vmcore\n  vmcore-gdbserver %s vmcore           # no vmlinux: kallsyms and BTF from the dump\n  vmcore-gdbserver %s --json vmlinux vmcore.1 vmcore.2", c.Name, c.Name, c.Name),
			Args:    cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var ops []string
				if n := cmd.ArgsLenAtDash(); operands || (c.Name == "ps" || c.Name == "kmem") && n >= 0 {
					// Operands (ps: command names; kmem: cache names or
					// addresses) come after --.
					if n < 1 || operands && n == len(args) {
						return fmt.Errorf("usage: %s", cmd.Use)
					}
					args, ops = args[:n], args[n:]
				}
				vmlinux, dumps := splitVmlinux(args)
				if c.Name == "analyze" && isFleet(dumps) {
					if !asJSON {
						return fmt.Errorf("analyze: several dumps (or a directory): add --json for one record a line")
					}
					return analyzeFleet(vmlinux, dumps, jobs, cmd.OutOrStdout(), cmd.ErrOrStderr())
				}
				k, vmlinux, closeAll, err := openKernel(vmlinux, dumps, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				defer closeAll()
				t := &triage.Triage{K: k, Vmlinux: vmlinux, Dumps: dumps, Diag: cmd.ErrOrStderr()}
				if c.Name == "mod" {
					if len(modDirs) == 0 {
						modDirs = gdbfiles.DefaultModuleDirs(k.Info.OSRelease)
					}
					// The listing names the files found: decompressed
					// copies would be gone when the command ends.
					t.ModFiles = &gdbfiles.ModuleFiles{Dirs: modDirs, NoDecompress: true, ByBuildID: newLocator(cmd.ErrOrStderr()).module}
				}
				argv := []string{c.Name}
				if all {
					argv = append(argv, "-a")
				}
				if words {
					argv = append(argv, "-f")
				}
				if symbolic {
					argv = append(argv, "-F")
				}
				if lines {
					argv = append(argv, "-l")
				}
				if c.Name == "ps" {
					if psUser {
						argv = append(argv, "-u")
					}
					if psKernel {
						argv = append(argv, "-k")
					}
					if psLeaders {
						argv = append(argv, "-G")
					}
				}
				if logWall {
					argv = append(argv, "-T")
				}
				if kmemZones {
					argv = append(argv, "-z")
				}
				if kmemSlabs {
					argv = append(argv, "-s")
				}
				_ = kmemInfo // -i is the default
				if c.Name == "rd" {
					argv = argv[:1]
					if symbolic {
						argv = append(argv, "-s")
					}
					if physical {
						argv = append(argv, "-p")
					}
					if userPID != 0 {
						argv = append(argv, "-u", strconv.Itoa(userPID))
					}
				}
				argv = append(argv, ops...)
				if len(cpus) > 0 {
					var cs []string
					for _, c := range cpus {
						cs = append(cs, strconv.Itoa(c))
					}
					argv = append(argv, "-c", strings.Join(cs, ","))
				}
				for _, p := range pids {
					argv = append(argv, strconv.Itoa(p))
				}
				if f := cmd.Flags().Lookup("pid"); f != nil && f.Changed && (c.Name == "vm" || c.Name == "files") {
					argv = append(argv, strconv.Itoa(onePID))
				}
				return t.Run(argv, cmd.OutOrStdout(), asJSON)
			},
		}
		cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		if c.Name == "mod" {
			cmd.Flags().StringArrayVar(&modDirs, "modules-dir", nil, "where to look for each module's .ko (repeatable)")
		}
		if c.Name == "analyze" {
			cmd.Flags().IntVar(&jobs, "jobs", 0, "with several dumps or a directory: dumps analyzed at once (default: CPUs, at most 4)")
			cmd.Use = "analyze [flags] [VMLINUX] VMCORE... | --json [VMLINUX] DIR-or-VMCORE..."
		}
		if c.Name == "kmem" {
			cmd.Flags().BoolVarP(&kmemInfo, "info", "i", false, "the memory summary (the default), as crash's kmem -i")
			cmd.Flags().BoolVarP(&kmemZones, "zones", "z", false, "every zone: size, watermarks and vm_stat counters, as crash's kmem -z")
			cmd.Flags().BoolVarP(&kmemSlabs, "slabs", "s", false, "every SLUB cache (or those named after --): object size, allocated, total, slabs, slab size, as crash's kmem -s")
			cmd.MarkFlagsMutuallyExclusive("info", "zones", "slabs")
		}
		if c.Name == "log" {
			cmd.Flags().BoolVarP(&logWall, "wall-time", "T", false, "wall-clock times (from the dump's CRASHTIME), as crash's log -T")
		}
		if c.Name == "ps" {
			cmd.Flags().BoolVarP(&psUser, "user", "u", false, "user tasks only")
			cmd.Flags().BoolVarP(&psKernel, "kernel", "k", false, "kernel threads only")
			cmd.Flags().BoolVarP(&psLeaders, "group-leaders", "G", false, "thread-group leaders only (one line per process)")
			cmd.Use = "ps [flags] [VMLINUX] VMCORE... [-- COMM...]"
		}
		if c.Name == "rd" {
			cmd.Flags().BoolVarP(&symbolic, "symbols", "s", false, "words that point into kernel symbols as symbol+offset")
			cmd.Flags().BoolVarP(&physical, "physical", "p", false, "ADDR is a physical address")
			cmd.Flags().IntVarP(&userPID, "user", "u", 0, "ADDR is a user address of the task with this pid")
		}
		if operands {
			cmd.Use = c.Name + " [flags] [VMLINUX] VMCORE... -- " + strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(c.Usage, c.Name), " [-s] [-p | -u PID]"))
			cmd.Example = fmt.Sprintf("  vmcore-gdbserver %s vmlinux vmcore -- %s", c.Name, map[string]string{"rd": "linux_banner 8", "sym": "panic", "whatis": "handle_mm_fault", "struct": "task_struct.comm,pid init_task"}[c.Name])
		}
		if c.Name == "vm" || c.Name == "files" {
			cmd.Flags().IntVarP(&onePID, "pid", "p", 0, "the task with this pid (default: the panicking task), as crash's "+c.Name+" PID")
			cmd.Example = fmt.Sprintf("  vmcore-gdbserver %s vmlinux vmcore            # the panicking task\n  vmcore-gdbserver %s --pid 1 vmlinux vmcore\n  vmcore-gdbserver %s --json -p 1 vmcore        # no vmlinux: kallsyms and BTF from the dump", c.Name, c.Name, c.Name)
		}
		if c.Name == "bt" {
			cmd.Flags().BoolVarP(&all, "all", "a", false, "every task")
			cmd.Flags().IntSliceVarP(&cpus, "cpu", "c", nil, "the tasks running on these CPUs (crash's bt -c)")
			cmd.Flags().IntSliceVarP(&pids, "pid", "p", nil, "these pids (repeatable)")
			cmd.Flags().BoolVarP(&words, "frames", "f", false, "each frame's stack words, from its stack pointer to the next frame's (crash's bt -f)")
			cmd.Flags().BoolVarP(&lines, "lines", "l", false, "each frame's source file and line from the vmlinux's DWARF, inlined calls included (crash's bt -l)")
			cmd.Flags().BoolVarP(&symbolic, "symbols", "F", false, "as -f, with each word that points into a kernel symbol shown as symbol+offset (crash's bt -F)")
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// splitVmlinux tells a vmlinux (an ELF executable) in front of the dump
// files from a dump-only command line.
func splitVmlinux(args []string) (string, []string) {
	// Only a regular file is opened here: a FIFO would block the open.
	if st, err := os.Stat(args[0]); err != nil || !st.Mode().IsRegular() {
		return "", args
	}
	f, err := os.Open(args[0])
	if err != nil {
		return "", args
	}
	defer f.Close()
	var h [18]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return "", args
	}
	if string(h[:4]) == "\x7fELF" && binary.LittleEndian.Uint16(h[16:]) == uint16(elf.ET_EXEC) && len(args) > 1 {
		return args[0], args[1:]
	}
	return "", args
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
	if kt.modFiles != nil { // a nil *ModuleFiles in the interface would not be nil
		t.ModFiles = kt.modFiles
	}
	return t.Run(rest, out, asJSON)
}
