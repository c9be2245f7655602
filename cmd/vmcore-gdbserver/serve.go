package main

import (
	_ "embed"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbstub"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// kernelFramesPy is a gdb frame filter that ends backtraces at the user
// space boundary; the gdb subcommand loads it.
//
//go:embed kernel_frames.py
var kernelFramesPy []byte

type serveOptions struct {
	modDirs  []string
	listen   string
	unixPath string
	stdio    bool
	threads  string
	execFile bool
	verbose  bool
	stats    bool
}

func (o *serveOptions) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.threads, "threads", "all", "which tasks become threads: all, active (on a CPU, uninterruptible, panicking) or cpus")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "log every failed read and protocol problem to stderr")
	cmd.Flags().BoolVar(&o.stats, "stats", false, "when a client leaves, print how many packets it sent, the server's time building the replies and the time spent writing them")
	cmd.Flags().StringArrayVar(&o.modDirs, "modules-dir", nil, "where to find module .ko files (repeatable; default /usr/lib/debug/lib/modules/RELEASE and /lib/modules/RELEASE)")
}

// openKernel opens the dump and builds the kernel model; without a
// vmlinux, from the dump's own kallsyms and BTF.
func openKernel(vmlinux string, dumps []string) (*kernel.Kernel, func(), error) {
	d, err := vmcore.Open(dumps...)
	if err != nil {
		return nil, nil, err
	}
	if vmlinux == "" {
		k, err := kernel.LoadFromDump(d)
		if err != nil {
			d.Close()
			return nil, nil, err
		}
		return k, func() { d.Close() }, nil
	}
	v, err := symbols.Open(vmlinux)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	k, err := kernel.Load(d, v)
	if err != nil {
		d.Close()
		v.Close()
		return nil, nil, err
	}
	return k, func() { d.Close(); v.Close() }, nil
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [flags] VMLINUX VMCORE...",
		Short: "Serve the dump to gdb as a halted target, every kernel task a thread",
		Long: `serve presents the crashed kernel to any GDB Remote Serial Protocol client:
every task is a thread (named by its comm), the panicking task is selected,
and memory reads go through the dump's page tables. The dump is read-only:
writes, breakpoints and resuming are refused.

Listens on 127.0.0.1:1234 by default. Whoever reaches the port reads all of
the dumped kernel's memory, so prefer loopback, --unix or --stdio.`,
		Example: `  vmcore-gdbserver serve vmlinux vmcore
  gdb vmlinux -ex 'target remote :1234'

  gdb vmlinux -ex 'target remote | vmcore-gdbserver serve --stdio vmlinux vmcore'
  vmcore-gdbserver serve --unix /tmp/vmcore.sock vmlinux vmcore.1 vmcore.2`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return serve(o, args[0], args[1:])
		},
	}
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:1234", "TCP address to listen on")
	cmd.Flags().StringVar(&o.unixPath, "unix", "", "listen on this unix socket instead (created mode 0600)")
	cmd.Flags().BoolVar(&o.stdio, "stdio", false, "serve one client on stdin/stdout (gdb: target remote | ...)")
	cmd.Flags().BoolVar(&o.execFile, "exec-file", true, "offer VMLINUX to gdb as the executable (qXfer:exec-file)")
	o.flags(cmd)
	return cmd
}

type stderrLogger struct{ l *log.Logger }

func (s stderrLogger) Printf(format string, args ...any) { s.l.Printf(format, args...) }

func serve(o *serveOptions, vmlinux string, dumps []string) error {
	filter := threadFilter(o.threads)
	if filter != threadsAll && filter != threadsActive && filter != threadsCPUs {
		return fmt.Errorf("--threads %q: want all, active or cpus", o.threads)
	}
	logger := log.New(os.Stderr, "vmcore-gdbserver: ", 0)
	// VMCORE_GDBSERVER_CPUPROFILE=file writes a Go CPU profile of the
	// serving process (for `go tool pprof`), to find where server time goes.
	if path := os.Getenv("VMCORE_GDBSERVER_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	load := func() (*kernelTarget, func(), error) {
		k, closeAll, err := openKernel(vmlinux, dumps)
		if err != nil {
			return nil, nil, err
		}
		exe := ""
		if o.execFile {
			exe = vmlinux
		}
		kt, err := newKernelTarget(k, filter, exe)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		kt.vmlinux, kt.dumps = vmlinux, dumps
		dirs := o.modDirs
		if len(dirs) == 0 {
			dirs = kernel.DefaultModuleDirs(k.Info.OSRelease)
		}
		kt.modFiles = &kernel.ModuleFiles{Dirs: dirs}
		kt.libLog = func(s string) { logger.Printf("note: %s", s) }
		for _, w := range k.Warnings() {
			logger.Printf("warning: %s", w)
		}
		return kt, closeAll, nil
	}
	var target gdbstub.Target
	var kt *kernelTarget
	if o.stdio {
		// gdb is already waiting: answer (and acknowledge) its first
		// packets while the dump and vmlinux load, so a slow start never
		// makes it resend packets and lose step with the replies.
		lt := newLazyTarget(vmlinux, o.execFile)
		go func() {
			kt, closeAll, err := load()
			if err != nil {
				fmt.Fprintf(os.Stderr, "vmcore-gdbserver: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				os.Exit(1)
			}
			_ = closeAll // the process ends with its one session
			lt.set(kt)
		}()
		target = lt
	} else {
		var closeAll func()
		var err error
		kt, closeAll, err = load()
		if err != nil {
			return err
		}
		defer closeAll()
		target = kt
	}
	srv := &gdbstub.Server{Target: target}
	if o.verbose {
		srv.Log = stderrLogger{logger}
	}
	if o.stats {
		srv.OnSessionEnd = func(who string, st gdbstub.Stats) {
			per := time.Duration(0)
			if st.Packets > 0 {
				per = st.Busy / time.Duration(st.Packets)
			}
			logger.Printf("stats: client %s: %d packets, server time %v (%v a packet), writes %v, %d bytes sent", who, st.Packets, st.Busy.Round(time.Microsecond), per.Round(time.Microsecond), st.Write.Round(time.Microsecond), st.BytesOut)
		}
	}
	if o.stdio {
		srv.ServeConn(gdbstub.StdioConn{Reader: os.Stdin, Writer: os.Stdout}, "stdio")
		return nil
	}
	var l net.Listener
	var err error
	var where, remote string
	if o.unixPath != "" {
		os.Remove(o.unixPath)
		old := umask(0o077)
		l, err = net.Listen("unix", o.unixPath)
		umask(old)
		if err == nil {
			err = os.Chmod(o.unixPath, 0o600)
		}
		where, remote = o.unixPath, o.unixPath
	} else {
		l, err = net.Listen("tcp", o.listen)
		if err != nil {
			return fmt.Errorf("%w (another server on that port? choose one with --listen HOST:PORT)", err)
		}
		if err == nil {
			where = l.Addr().String()
			remote = where
			if host, _, _ := net.SplitHostPort(where); !net.ParseIP(host).IsLoopback() {
				logger.Printf("warning: listening on %s: whoever reaches this port reads all of the dumped kernel's memory", where)
			}
		}
	}
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(os.Stderr, "vmcore-gdbserver: %s, %d threads, serving on %s; connect with: gdb %s -ex 'target remote %s'\n",
		kt.k.Info.OSRelease, len(kt.threads), where, shellQuote(vmlinux), remote)
	return srv.Serve(l)
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newGdbCmd() *cobra.Command {
	o := &serveOptions{}
	var gdbPath string
	cmd := &cobra.Command{
		Use:   "gdb [flags] VMLINUX VMCORE... [-- GDB-ARGS...]",
		Short: "Start gdb on the dump with every symbol placed right, per-CPU ones included",
		Long: `gdb starts gdb connected to this server over a pipe, with the vmlinux symbols
loaded at the dump's KASLR offset except the per-CPU section, which stays at
its link address so that &var + __per_cpu_offset[cpu] is right:

  add-symbol-file VMLINUX -o KERNELOFFSET -s .data..percpu 0

Arguments after -- go to gdb (for example -batch -ex 'bt').`,
		Example: `  vmcore-gdbserver gdb vmlinux vmcore
  vmcore-gdbserver gdb vmlinux vmcore -- -batch -ex 'info threads'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pos, extra := args, []string(nil)
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				pos, extra = args[:n], args[n:]
			}
			if len(pos) < 2 {
				return fmt.Errorf("want VMLINUX and at least one VMCORE")
			}
			return runGdb(o, gdbPath, pos[0], pos[1:], extra)
		},
	}
	cmd.Flags().StringVar(&gdbPath, "gdb", "gdb", "the gdb to run")
	o.flags(cmd)
	return cmd
}

func runGdb(o *serveOptions, gdbPath, vmlinux string, dumps, extra []string) error {
	d, err := vmcore.Open(dumps...)
	if err != nil {
		return err
	}
	info, err := d.VMCOREINFO()
	d.Close()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	server := []string{shellQuote(self), "serve", "--stdio", "--exec-file=false", "--threads", o.threads}
	for _, d := range o.modDirs {
		server = append(server, "--modules-dir", shellQuote(d))
	}
	if o.verbose {
		server = append(server, "-v")
	}
	server = append(server, shellQuote(vmlinux))
	for _, f := range dumps {
		server = append(server, shellQuote(f))
	}
	filter, err := os.CreateTemp("", "vmcore-gdbserver-*.py")
	if err != nil {
		return err
	}
	defer os.Remove(filter.Name())
	filter.Write(kernelFramesPy)
	filter.Close()
	args := []string{"-q",
		"-iex", "set confirm off",
		"-ex", "source " + filter.Name(),
		"-ex", "set architecture i386:x86-64",
		"-ex", fmt.Sprintf("add-symbol-file %s -o 0x%x -s .data..percpu 0", vmlinux, info.KernelOffset),
		"-ex", "target remote | " + strings.Join(server, " "),
		"-ex", "set confirm on",
	}
	args = append(args, extra...)
	c := exec.Command(gdbPath, args...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := c.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		return fmt.Errorf("running %s: %w", gdbPath, err)
	}
	return nil
}
