package main

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbfiles"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbstub"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
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

	maxClients       int
	handshakeTimeout time.Duration
}

func (o *serveOptions) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.threads, "threads", "all", "which tasks become threads: all, active (on a CPU, uninterruptible, panicking) or cpus")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "log every failed read and protocol problem to stderr")
	cmd.Flags().BoolVar(&o.stats, "stats", false, "when a client leaves, print how many packets it sent, the server's time building the replies and the time spent writing them")
	cmd.Flags().StringArrayVar(&o.modDirs, "modules-dir", nil, "where to find module .ko files (repeatable; default /usr/lib/debug/lib/modules/RELEASE and /lib/modules/RELEASE)")
}

// openKernel opens the dump and builds the kernel model. Without a
// vmlinux it looks for the dump's own (by build id, where debug packages
// install it, then through DEBUGINFOD_URLS), and failing that builds the
// model from the dump's kallsyms and BTF; notes and download progress go
// to diag. It returns the vmlinux used ("" for none).
func openKernel(vmlinux string, dumps []string, diag io.Writer) (*kernel.Kernel, string, func(), error) {
	d, err := vmcore.Open(dumps...)
	if err != nil {
		if vmlinux == "" && len(dumps) > 1 {
			// Perhaps the first file was meant as the vmlinux.
			return nil, "", nil, fmt.Errorf("%w (and %s is not a vmlinux: not an ELF executable)", err, dumps[0])
		}
		return nil, "", nil, err
	}
	if vmlinux == "" {
		info, err := d.VMCOREINFO()
		if err != nil {
			d.Close()
			return nil, "", nil, withFiles(err, dumps...)
		}
		path, from, lerr := newLocator(diag).vmlinux(d, info)
		if lerr == nil {
			fmt.Fprintf(diag, "vmcore-gdbserver: note: vmlinux %s (%s)\n", path, from)
			vmlinux = path
		} else {
			k, err := kernel.LoadFromDump(d)
			if err != nil {
				d.Close()
				return nil, "", nil, fmt.Errorf("%v; %w", lerr, withFiles(err, dumps...))
			}
			if none, ok := k.Types.(symbols.NoTypes); ok {
				// No BTF either: what needs types says so in one line,
				// with where the vmlinux was looked for.
				k.Types = symbols.NoTypes{Reason: fmt.Sprintf("%v; %s", lerr, none.Reason)}
			} else {
				fmt.Fprintf(diag, "vmcore-gdbserver: note: %v; using the dump's own kallsyms and BTF\n", lerr)
			}
			return k, "", func() { d.Close() }, nil
		}
	}
	v, err := symbols.Open(vmlinux)
	if err != nil {
		d.Close()
		return nil, "", nil, err
	}
	k, err := kernel.Load(d, v)
	if err != nil {
		d.Close()
		v.Close()
		return nil, "", nil, withFiles(err, append([]string{vmlinux}, dumps...)...)
	}
	return k, vmlinux, func() { d.Close(); v.Close() }, nil
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [flags] [VMLINUX] VMCORE...",
		Short: "Serve the dump to gdb as a halted target, every kernel task a thread",
		Long: `serve presents the crashed kernel to any GDB Remote Serial Protocol client:
every task is a thread (named by its comm), the panicking task is selected,
and memory reads go through the dump's page tables. The dump is read-only:
writes, breakpoints and resuming are refused.

Without VMLINUX, the dump's own is looked for by its build id: where debug
packages install it (/usr/lib/debug), then on the debuginfod servers named
in DEBUGINFOD_URLS (cached under the user's cache directory); failing
that, the dump's own kallsyms and BTF stand in (kernels 6.0+). Modules
missing from --modules-dir are looked for by their build ids the same way.

Listens on 127.0.0.1:1234 by default. Whoever reaches the port reads all of
the dumped kernel's memory, so prefer loopback, --unix or --stdio.`,
		Example: `  vmcore-gdbserver serve vmlinux vmcore
  gdb vmlinux -ex 'target remote :1234'

  gdb vmlinux -ex 'target remote | vmcore-gdbserver serve --stdio vmlinux vmcore'
  vmcore-gdbserver serve --unix /tmp/vmcore.sock vmlinux vmcore.1 vmcore.2
  DEBUGINFOD_URLS=https://debuginfod.example.org vmcore-gdbserver serve vmcore`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vmlinux, dumps := splitVmlinux(args)
			return serve(o, vmlinux, dumps)
		},
	}
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:1234", "TCP address to listen on")
	cmd.Flags().StringVar(&o.unixPath, "unix", "", "listen on this unix socket instead (created mode 0600)")
	cmd.Flags().BoolVar(&o.stdio, "stdio", false, "serve one client on stdin/stdout (gdb: target remote | ...)")
	cmd.Flags().BoolVar(&o.execFile, "exec-file", true, "offer VMLINUX to gdb as the executable (qXfer:exec-file)")
	cmd.Flags().IntVar(&o.maxClients, "max-clients", gdbstub.DefaultMaxClients, "most connections served at once; over it, one that has sent nothing yet is dropped, or else the new one is closed")
	cmd.Flags().DurationVar(&o.handshakeTimeout, "handshake-timeout", gdbstub.DefaultHandshakeTimeout, "drop a connection that sends nothing for this long")
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
	if o.maxClients < 1 {
		return fmt.Errorf("--max-clients %d: want at least 1", o.maxClients)
	}
	if o.handshakeTimeout <= 0 {
		return fmt.Errorf("--handshake-timeout %v: want a positive duration", o.handshakeTimeout)
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
	// Decompressed modules go to a private directory, removed when the
	// server stops (by a signal too).
	modFiles := &gdbfiles.ModuleFiles{}
	defer modFiles.Close()
	// The files gdb may read through the connection, each kept open from
	// the moment the server first used it.
	served := &gdbfiles.Served{}
	defer served.Close()
	// Module files are named to gdb by absolute paths: over ssh, gdb's
	// working directory is not the server's.
	for i, d := range o.modDirs {
		if abs, err := filepath.Abs(d); err == nil {
			o.modDirs[i] = abs
		}
	}
	load := func() (*kernelTarget, func(), error) {
		k, vmlinux, closeAll, err := openKernel(vmlinux, dumps, os.Stderr)
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
			return nil, nil, withFiles(err, dumps...)
		}
		kt.vmlinux, kt.dumps = vmlinux, dumps
		// The vmlinux is served under the name qXfer:exec-file gives.
		if abs, err := filepath.Abs(vmlinux); err == nil && vmlinux != "" {
			f, _, err := rofile.Open(vmlinux)
			if err == nil {
				err = served.Add(abs, f)
			}
			if err != nil {
				logger.Printf("note: %s will not be served to gdb: %v", vmlinux, err)
			}
		}
		kt.served = served
		modFiles.Dirs = o.modDirs
		if len(modFiles.Dirs) == 0 {
			modFiles.Dirs = gdbfiles.DefaultModuleDirs(k.Info.OSRelease)
		}
		modFiles.ByBuildID = newLocator(os.Stderr).module
		kt.modFiles = modFiles
		kt.libLog = func(s string) { logger.Printf("note: %s", s) }
		if vmlinux == "" && o.execFile {
			// No vmlinux: gdb gets the kernel's symbols and types from
			// an object made of the dump's kallsyms and BTF.
			if path, notes, err := kt.symbolFile(); err != nil {
				logger.Printf("note: gdb gets no kernel symbols: %v", err)
			} else {
				kt.execFile = path
				for _, n := range notes {
					logger.Printf("note: %s", n)
				}
			}
		}
		// The library list (modules, and the unwind object that takes a
		// few hundred ms to generate) is built now, not when gdb asks:
		// a reply slower than gdb's remotetimeout makes it resend and
		// lose step with the replies.
		// The dump is unmapped only after that build has stopped reading
		// it (a server that fails early closes at once).
		built := make(chan struct{})
		go func() {
			defer close(built)
			kt.LibrariesXML()
		}()
		for _, w := range k.Warnings() {
			logger.Printf("warning: %s", w)
		}
		return kt, func() { <-built; closeAll() }, nil
	}
	// SIGTERM (gdb sends it to a pipe server it is done with), SIGINT and
	// SIGHUP stop the server cleanly: the listener closes, which removes
	// a unix socket, and the deferred clean-ups run.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// A wrong --unix is reported at once, not after a long load.
	if o.unixPath != "" && !o.stdio {
		if err := checkUnixPath(o.unixPath); err != nil {
			return err
		}
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
				modFiles.Close()
				os.Exit(1)
			}
			_ = closeAll // the process ends with its one session
			lt.set(kt)
		}()
		target = lt
	}
	var l net.Listener
	var where, remote string
	if !o.stdio {
		// A port in use is reported at once, not after a long load.
		switch {
		case o.unixPath != "":
			var err error
			if l, err = listenUnix(o.unixPath); err != nil {
				return err
			}
			where, remote = o.unixPath, o.unixPath
		default:
			var err error
			l, err = net.Listen("tcp", o.listen)
			if err != nil {
				return fmt.Errorf("%w (another server on that port? choose one with --listen HOST:PORT)", err)
			}
			where = l.Addr().String()
			remote = where
			if host, _, _ := net.SplitHostPort(where); !net.ParseIP(host).IsLoopback() {
				logger.Printf("warning: listening on %s: whoever reaches this port reads all of the dumped kernel's memory", where)
			}
		}
		defer l.Close()
		var closeAll func()
		var err error
		kt, closeAll, err = load()
		if err != nil {
			return err
		}
		defer closeAll()
		// The library list (module files, some perhaps fetched by build
		// id) is complete before anyone is served: gdb asks for it once,
		// early, and gives up on a reply slower than its remotetimeout.
		kt.LibrariesXML()
		target = kt
	}
	srv := &gdbstub.Server{Target: target, Warn: stderrLogger{logger}, MaxClients: o.maxClients, HandshakeTimeout: o.handshakeTimeout}
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
		go func() {
			// The session blocks reading stdin: clean up and leave.
			<-sigs
			modFiles.Close()
			os.Exit(0)
		}()
		srv.ServeConn(gdbstub.StdioConn{Reader: os.Stdin, Writer: os.Stdout}, "stdio")
		return nil
	}
	go func() {
		sig := <-sigs
		logger.Printf("%v: stopping", sig)
		l.Close()
	}()
	// The suggested line turns on gdb's index cache (before the file is
	// read): every session after the first looks types up in seconds.
	fmt.Fprintf(os.Stderr, "vmcore-gdbserver: %s, %d threads, serving on %s; connect with: gdb -iex 'set index-cache enabled on' %s -ex %s\n",
		kt.k.Info.OSRelease, len(kt.threads), strings.ReplaceAll(where, "\n", "\\n"), gdbFileArg(kt.vmlinux), shellQuote("target remote "+remote))
	return srv.Serve(l)
}

// gdbFileArg is the file argument of the gdb command line serve
// suggests: none when there is no vmlinux (gdb then reads it, or the
// server's generated objects, through the connection).
func gdbFileArg(vmlinux string) string {
	if vmlinux == "" {
		return "-q"
	}
	return shellQuote(vmlinux)
}

// listenUnix listens on a new unix socket at path, mode 0600. Whatever is
// at path already is left alone, except a stale socket (one nobody
// accepts on any more), which is replaced: --unix never deletes a dump
// or any other file given by mistake, nor takes over a live server.
func listenUnix(path string) (net.Listener, error) {
	if err := checkUnixPath(path); err != nil {
		return nil, err
	}
	// The umask makes the socket 0600 from the start: no window in which
	// another user could connect.
	old := umask(0o077)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("--unix %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("--unix %s: %w", path, err)
	}
	return l, nil
}

// checkUnixPath accepts a path where nothing is, or a stale socket, which
// it removes.
func checkUnixPath(path string) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("--unix %s: %w", path, err)
	case st.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("--unix %s: exists and is not a socket (%s); not replacing it", path, fileKind(st.Mode()))
	default:
		c, err := net.DialTimeout("unix", path, 2*time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("--unix %s: another server is listening on this socket", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("--unix %s: cannot tell whether the socket is stale: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("--unix %s: removing the stale socket: %w", path, err)
		}
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// shellQuote makes s one word for a POSIX shell: words of only safe
// characters stay as they are, any other is single-quoted, which keeps
// everything literal (newlines and tabs too); a quote inside is closed,
// escaped and reopened.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// gdbArgQuote makes s one argument for gdb commands that split their
// arguments with libiberty's buildargv (add-symbol-file): a backslash
// makes any character literal, whitespace and quotes included.
func gdbArgQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func newGdbCmd() *cobra.Command {
	o := &serveOptions{}
	var gdbPath string
	cmd := &cobra.Command{
		Use:   "gdb [flags] [VMLINUX] VMCORE... [-- GDB-ARGS...]",
		Short: "Start gdb on the dump with every symbol placed right, per-CPU ones included",
		Long: `gdb starts gdb connected to this server over a pipe, with the vmlinux symbols
loaded at the dump's KASLR offset except the per-CPU section, which stays at
its link address so that &var + __per_cpu_offset[cpu] is right:

  add-symbol-file VMLINUX -o KERNELOFFSET -s .data..percpu 0

Without VMLINUX, the dump's own is looked for by build id as serve does
(/usr/lib/debug, then DEBUGINFOD_URLS), and fetched before gdb starts.

Arguments after -- go to gdb (for example -batch -ex 'bt').`,
		Example: `  vmcore-gdbserver gdb vmlinux vmcore
  vmcore-gdbserver gdb vmlinux vmcore -- -batch -ex 'info threads'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pos, extra := args, []string(nil)
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				pos, extra = args[:n], args[n:]
			}
			if len(pos) < 1 {
				return fmt.Errorf("want at least one VMCORE (and the VMLINUX before it)")
			}
			vmlinux, dumps := splitVmlinux(pos)
			return runGdb(o, gdbPath, vmlinux, dumps, extra)
		},
	}
	cmd.Flags().StringVar(&gdbPath, "gdb", "gdb", "the gdb to run")
	o.flags(cmd)
	return cmd
}

// pipeArgEnv names the environment variables that carry the server's
// arguments to the `target remote | ...` shell command: gdb runs that
// command with sh -c, and a file name only ever reaches the shell as the
// value of a quoted variable, never as text the shell parses.
const pipeArgEnv = "VMCORE_GDBSERVER_PIPE_ARG"

func runGdb(o *serveOptions, gdbPath, vmlinux string, dumps, extra []string) error {
	d, err := vmcore.Open(dumps...)
	if err != nil {
		return err
	}
	info, err := d.VMCOREINFO()
	noVmlinux := false
	if err == nil && vmlinux == "" {
		// gdb places the vmlinux's symbols itself when there is one;
		// without, the server offers the symbol object it makes from the
		// dump's kallsyms and BTF as the executable.
		var lerr error
		if vmlinux, _, lerr = newLocator(os.Stderr).vmlinux(d, info); lerr != nil {
			fmt.Fprintf(os.Stderr, "vmcore-gdbserver: note: %v; gdb gets the dump's own kallsyms and BTF\n", lerr)
			noVmlinux = true
		}
	}
	d.Close()
	if err != nil {
		return withFiles(err, dumps...)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program for gdb to run: %w", err)
	}
	// gdb expands a leading ~ in file names; an absolute path has none.
	absVmlinux, err := filepath.Abs(vmlinux)
	if err != nil && !noVmlinux {
		return fmt.Errorf("%s: %w", vmlinux, err)
	}
	server := []string{self, "serve", "--stdio", "--threads", o.threads}
	if !noVmlinux {
		server = append(server, "--exec-file=false")
	}
	for _, d := range o.modDirs {
		server = append(server, "--modules-dir", d)
	}
	if o.verbose {
		server = append(server, "-v")
	}
	server = append(server, "--")
	if !noVmlinux {
		server = append(server, vmlinux)
	}
	server = append(server, dumps...)
	env := os.Environ()
	words := []string{"exec"}
	for i, a := range server {
		name := fmt.Sprintf("%s%d", pipeArgEnv, i)
		env = append(env, name+"="+a)
		words = append(words, `"$`+name+`"`)
	}
	dir, err := os.MkdirTemp("", "vmcore-gdbserver-gdb-")
	if err != nil {
		return fmt.Errorf("temporary directory for the frame filter: %w", err)
	}
	defer os.RemoveAll(dir)
	filter := filepath.Join(dir, "kernel_frames.py")
	if err := os.WriteFile(filter, kernelFramesPy, 0o600); err != nil {
		return fmt.Errorf("%s: %w", filter, err)
	}
	// Ctrl-C at the terminal reaches gdb and this process alike; it is
	// gdb's to handle (while a batch gdb writes the index first, it skips
	// that). A SIGTERM or SIGHUP is passed on to gdb.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var index []string
	if !noVmlinux {
		if index, err = gdbIndexSetup(gdbPath, absVmlinux, sigs); err != nil {
			return err
		}
	}
	args := []string{"-q",
		"-iex", "set confirm off",
		// The server's first replies build the kernel model (about a
		// second from DWARF, more on a loaded machine): more than gdb's
		// default 2 s wait must not cost the session its threads.
		"-iex", "set remotetimeout 30",
		// The server runs here: gdb reads the module files itself rather
		// than through the pipe (sysroot target:, its default).
		"-iex", "set sysroot",
	}
	// gdb's index cache, on before add-symbol-file loads the vmlinux.
	args = append(args, index...)
	args = append(args,
		// -x takes the file name as it is, without parsing it.
		"-x", filter,
		"-ex", "set architecture i386:x86-64")
	if !noVmlinux {
		args = append(args, "-ex", fmt.Sprintf("add-symbol-file %s -o 0x%x -s .data..percpu 0", gdbArgQuote(absVmlinux), info.KernelOffset))
	}
	args = append(args,
		"-ex", "target remote | "+strings.Join(words, " "),
		"-ex", "set confirm on",
	)
	args = append(args, extra...)
	c := exec.Command(gdbPath, args...)
	c.Env = env
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := c.Start(); err != nil {
		return fmt.Errorf("running %s: %w", gdbPath, err)
	}
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGINT {
				c.Process.Signal(sig)
			}
		}
	}()
	if err := c.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.RemoveAll(dir) // os.Exit skips the deferred removal
			code := ee.ExitCode()
			if code < 0 {
				code = 1
			}
			os.Exit(code)
		}
		return fmt.Errorf("running %s: %w", gdbPath, err)
	}
	return nil
}
