package triage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
)

// Triage runs commands on one kernel.
type Triage struct {
	K       *kernel.Kernel
	Vmlinux string
	Dumps   []string
	// ModFiles, if set, is where `mod` looks for each module's file.
	ModFiles ModuleFinder
	// Diag, if set, gets the notes on what could not be read (the CLI
	// sends them to stderr, apart from the table); nil: the output.
	Diag io.Writer
}

// ModuleFinder names the object file of a loaded module, or says why
// there is none (gdbfiles.ModuleFiles is one).
type ModuleFinder interface {
	FindModule(m *kernel.Module) (string, error)
}

// Commands lists the commands with a line of help each.
var Commands = []struct{ Name, Usage, Help string }{
	{"sys", "sys", "release, CPUs, memory, uptime, crash time, panic message and task"},
	{"ps", "ps [-u | -k] [-G] [COMM...]", "every task: pid, ppid, CPU, task, state, %mem, VSZ, RSS, comm ('>' = running); -u user tasks, -k kernel threads, -G thread-group leaders, COMM: only tasks of these names"},
	{"foreach", "foreach bt [-f | -F] [-l]", "every task's backtrace (as bt -a)"},
	{"bt", "bt [-a | -c CPU] [-f | -F] [-l] [PID...]", "kernel backtrace of the panicking task, all tasks (-a) or the given pids; -f: each frame's stack words, -F: as symbols, -l: source lines"},
	{"log", "log [-T]", "the kernel log from the printk ring buffer; -T: wall-clock times"},
	{"kmem", "kmem [-i | -z | -s [CACHE...] | ADDR]", "memory summary, as crash's kmem -i; -z: every zone's free pages, watermarks and counters; -s: every SLUB cache's object size, allocated and total objects, slabs and slab size (or the named caches); ADDR: where an address lies (user, kernel image, module, vmalloc area with its caller, task stack, page and flags, slab cache and object, allocated or free)"},
	{"mod", "mod", "loaded modules: name, base, size, state"},
	{"rd", "rd [-s] [-p | -u PID] ADDR|SYMBOL [COUNT]", "quad words of memory (kernel, -p physical, -u a task's user space), -s as symbols"},
	{"sym", "sym ADDR|SYMBOL", "the symbol at an address, or a symbol's address, with its type letter (T, D, B, R...) and, in text, the source line"},
	{"whatis", "whatis SYMBOL | struct NAME", "a function's prototype (with parameter names), a variable's type, or a struct, union or enum's definition, from the vmlinux's DWARF; without a vmlinux from the dump's BTF (its functions, per-CPU variables and types)"},
	{"vm", "vm [PID]", "the task's memory mappings (the panicking task's without PID): mm, pgd, RSS, total VM, then each VMA's start, end, flags and file (or [heap], [stack], [vdso], [vvar]), as crash's vm"},
	{"files", "files [PID]", "the task's open files (the panicking task's without PID): root and cwd, then each fd's struct file, dentry, inode, type and path, as crash's files"},
	{"struct", "struct NAME[.MEMBER[,MEMBER...]] ADDR|SYMBOL[:CPUS]", "the struct (or union) NAME at an address, its members' values nested as crash prints them; .MEMBER (a.b, a,b): only those members; SYMBOL:CPUS a per-CPU variable's copies (:a all, :1,3, :0-2); NAME alone: its definition"},
	{"runq", "runq", "each CPU's run queue: the current task, then the RT and CFS tasks waiting, as crash's runq"},
	{"analyze", "analyze", "what crashed and why: the kind of crash, task, CPU, backtrace with source lines, the fault, memory when memory was the reason, taint, modules and the log up to the panic (Markdown; --json)"},
	{"help", "help", "this list"},
}

// ErrUsage marks a command line that is not understood.
var ErrUsage = errors.New("usage")

// Run executes one command line ("bt -a", "ps", ...). With asJSON the
// output is one JSON value.
// needsTypes says what each command cannot do without type information.
var needsTypes = map[string]string{
	"sys":    "read uptime, memory and the panic task (they need struct layouts)",
	"ps":     "walk the task list (it needs struct task_struct's layout)",
	"bt":     "unwind (finding each task's stack and frames needs struct layouts; gdb's own bt works on the CPU threads)",
	"kmem":   "read the memory counters (they need the kernel's enums and struct layouts)",
	"mod":    "walk the module list (it needs struct module's layout)",
	"vm":     "read the memory mappings (they need struct mm_struct's and vm_area_struct's layouts)",
	"files":  "read the open files (they need struct files_struct's and fdtable's layouts)",
	"struct": "print a struct (its layout comes from the kernel's types)",
}

func (t *Triage) Run(args []string, w io.Writer, asJSON bool) error {
	if len(args) == 0 {
		args = []string{"help"}
	}
	if need, ok := needsTypes[args[0]]; ok && !t.K.HasTypes() {
		return fmt.Errorf("%s: cannot %s: %w", args[0], need, t.K.Types.(symbols.NoTypes).Err())
	}
	var v any
	var err error
	switch args[0] {
	case "sys":
		v, err = t.Sys()
	case "ps":
		var f psFilter
		for _, a := range args[1:] {
			switch {
			case a == "-u":
				f.user = true
			case a == "-k":
				f.kernel = true
			case a == "-G":
				f.leaders = true
			case strings.HasPrefix(a, "-"):
				return fmt.Errorf("%w: ps [-u | -k] [-G] [COMM...]: unknown option %s", ErrUsage, a)
			default:
				f.comms = append(f.comms, a)
			}
		}
		if f.user && f.kernel {
			return fmt.Errorf("%w: ps: -u and -k exclude each other", ErrUsage)
		}
		var l PSList
		l, err = t.PS()
		v = f.apply(l, t.K)
	case "foreach":
		// crash's foreach bt: every task's backtrace.
		if len(args) < 2 || args[1] != "bt" {
			return fmt.Errorf("%w: foreach bt [-f | -F] [-l]", ErrUsage)
		}
		return t.Run(append([]string{"bt", "-a"}, args[2:]...), w, asJSON)
	case "bt":
		var o BTOptions
		var pids []int
		for i := 1; i < len(args); i++ {
			a := args[i]
			switch {
			case a == "-a":
				o.All = true
			case a == "-c":
				// crash's bt -c CPU[,CPU...]: the tasks running on those CPUs.
				if i+1 >= len(args) {
					return fmt.Errorf("%w: bt -c CPU[,CPU...]", ErrUsage)
				}
				i++
				for _, f := range strings.Split(args[i], ",") {
					n, perr := strconv.Atoi(f)
					if perr != nil || n < 0 || n >= len(t.K.CPUs) {
						return fmt.Errorf("%w: bt -c: %q is not a CPU of this dump (0-%d)", ErrUsage, f, len(t.K.CPUs)-1)
					}
					o.CPUs = append(o.CPUs, n)
				}
			case a == "-f":
				o.Words = true
			case a == "-F":
				o.Words, o.Symbolic = true, true
			case a == "-l":
				o.Lines = true
			case strings.HasPrefix(a, "-") && len(a) > 2 && strings.Trim(a[1:], "fFl") == "":
				// Combined flags: -fl, -Fl, -lf ...
				for _, c := range a[1:] {
					switch c {
					case 'f':
						o.Words = true
					case 'F':
						o.Words, o.Symbolic = true, true
					case 'l':
						o.Lines = true
					}
				}
			default:
				n, perr := strconv.Atoi(a)
				if perr != nil {
					return fmt.Errorf("%w: bt [-a | -c CPU] [-f | -F] [-l] [PID...]: %q is not a pid", ErrUsage, a)
				}
				pids = append(pids, n)
			}
		}
		o.PIDs = pids
		v, err = t.BTWith(o)
	case "log":
		switch {
		case len(args) == 1:
			v, err = t.Log()
		case len(args) == 2 && args[1] == "-T":
			v, err = t.LogWall()
		default:
			return fmt.Errorf("%w: log [-T]", ErrUsage)
		}
	case "kmem":
		switch {
		case len(args) == 1 || len(args) == 2 && args[1] == "-i":
			v, err = t.Kmem()
		case len(args) == 2 && args[1] == "-z":
			v, err = t.KmemZones()
		case len(args) >= 2 && args[1] == "-s":
			v, err = t.KmemSlabs(args[2:])
		case len(args) == 2 && !strings.HasPrefix(args[1], "-"):
			v, err = t.KmemAddr(args[1])
		default:
			return fmt.Errorf("%w: kmem [-i | -z | -s [CACHE...] | ADDR]", ErrUsage)
		}
	case "mod":
		v, err = t.Mod()
	case "rd":
		var o RdOptions
		rest := args[1:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
			switch rest[0] {
			case "-s":
				o.Symbolic = true
			case "-p":
				o.Physical = true
			case "-u":
				if len(rest) < 2 {
					return fmt.Errorf("%w: rd -u PID ADDR", ErrUsage)
				}
				n, perr := strconv.Atoi(rest[1])
				if perr != nil || n <= 0 {
					return fmt.Errorf("%w: rd -u: %q is not a pid", ErrUsage, rest[1])
				}
				o.PID = n
				rest = rest[1:]
			default:
				return fmt.Errorf("%w: rd: unknown option %s", ErrUsage, rest[0])
			}
			rest = rest[1:]
		}
		if len(rest) < 1 || len(rest) > 2 || o.Physical && o.PID != 0 {
			return fmt.Errorf("%w: rd [-s] [-p | -u PID] ADDR|SYMBOL [COUNT]", ErrUsage)
		}
		o.Addr = rest[0]
		if len(rest) == 2 {
			n, perr := strconv.Atoi(rest[1])
			if perr != nil || n <= 0 {
				return fmt.Errorf("%w: rd: count %q is not a positive number", ErrUsage, rest[1])
			}
			o.Count = n
		}
		v, err = t.Rd(o)
	case "sym":
		if len(args) != 2 {
			return fmt.Errorf("%w: sym ADDR|SYMBOL", ErrUsage)
		}
		v, err = t.Sym(args[1])
	case "analyze":
		v, err = t.Analyze()
	case "runq":
		if len(args) != 1 {
			return fmt.Errorf("%w: runq", ErrUsage)
		}
		var qs []kernel.RunQueue
		qs, err = t.K.RunQueues()
		v = runqResult(qs)
	case "vm", "files":
		pid, perr := pidOperand(args[0], args[1:])
		if perr != nil {
			return perr
		}
		if args[0] == "vm" {
			v, err = t.VM(pid)
		} else {
			v, err = t.Files(pid)
		}
	case "whatis":
		if len(args) < 2 {
			return fmt.Errorf("%w: whatis SYMBOL | struct NAME | union NAME | enum NAME", ErrUsage)
		}
		var d *symbols.Description
		d, err = t.Whatis(strings.Join(args[1:], " "))
		if err == nil {
			v = whatisResult{d}
		}
	case "struct":
		switch len(args) {
		case 2:
			// crash's struct NAME: the definition (of a struct, else a
			// union, else a typedef of the name).
			if strings.Contains(args[1], ".") {
				return fmt.Errorf("%w: struct NAME.MEMBER needs an address", ErrUsage)
			}
			var d *symbols.Description
			for _, n := range []string{"struct " + args[1], "union " + args[1], args[1]} {
				var e error
				if d, e = t.Whatis(n); e == nil {
					break
				}
				if err == nil {
					err = e // the struct's error is the one to give
				}
			}
			if d != nil {
				v, err = whatisResult{d}, nil
			}
		case 3:
			if sym, cpus, ok := strings.Cut(args[2], ":"); ok {
				v, err = t.StructPerCPU(args[1], sym, cpus)
			} else {
				v, err = t.Struct(args[1], args[2])
			}
		default:
			return fmt.Errorf("%w: struct NAME[.MEMBER[,MEMBER...]] ADDR|SYMBOL[:CPUS]", ErrUsage)
		}
	case "help":
		v = helpText{}
	default:
		return fmt.Errorf("%w: unknown command %q (try help)", ErrUsage, args[0])
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else if err := v.(texter).text(w); err != nil {
		return err
	}
	// What could not be read is said, not silently left out: beside the
	// table, or beside the JSON (never inside it, where a reader of the
	// list would trip on it).
	if args[0] == "ps" || args[0] == "bt" {
		diag := t.Diag
		if diag == nil && asJSON {
			return nil
		}
		if diag == nil {
			diag = w
		}
		for _, warn := range t.K.Warnings() {
			fmt.Fprintf(diag, "note: %s\n", warn)
		}
	}
	return nil
}

type texter interface{ text(io.Writer) error }

type helpText struct{}

func (helpText) text(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range Commands {
		fmt.Fprintf(tw, "%s\t%s\n", c.Usage, c.Help)
	}
	return tw.Flush()
}

func (helpText) MarshalJSON() ([]byte, error) { return json.Marshal(Commands) }

// SysInfo is `sys`.
type SysInfo struct {
	Kernel      string   `json:"kernel"`
	Dumpfiles   []string `json:"dumpfiles"`
	Format      string   `json:"format"`
	Partial     bool     `json:"partial"`
	CPUs        int      `json:"cpus"`
	CrashTime   string   `json:"crash_time,omitempty"`
	Uptime      string   `json:"uptime,omitempty"`
	UptimeSec   float64  `json:"uptime_seconds,omitempty"`
	Tasks       int      `json:"tasks"`
	Nodename    string   `json:"nodename"`
	Release     string   `json:"release"`
	Version     string   `json:"version"`
	Machine     string   `json:"machine"`
	MemoryBytes uint64   `json:"memory_bytes"`
	Panic       string   `json:"panic,omitempty"`
	PanicPID    *int32   `json:"panic_pid,omitempty"`
	PanicComm   string   `json:"panic_command,omitempty"`
	PanicTask   string   `json:"panic_task,omitempty"`
	PanicCPU    *int     `json:"panic_cpu,omitempty"`
	Notes       []string `json:"notes,omitempty"`
}

// Sys gathers `sys`.
func (t *Triage) Sys() (*SysInfo, error) {
	k := t.K
	s := &SysInfo{Kernel: t.Vmlinux, Dumpfiles: t.Dumps, Format: k.Dump.Format().String(), CPUs: len(k.CPUs), Tasks: len(k.Tasks)}
	if lvl, ok := k.Dump.DumpLevel(); ok && lvl > 0 {
		s.Partial = true
	}
	u, err := k.Uname()
	if err != nil {
		s.Notes = append(s.Notes, "utsname: "+err.Error())
	}
	s.Nodename, s.Release, s.Version, s.Machine = u.Nodename, u.Release, u.Version, u.Machine
	total, _ := k.TotalRAM()
	s.MemoryBytes = total * k.Dump.PageSize()
	if k.Info.HasCrashTime {
		s.CrashTime = time.Unix(k.Info.CrashTime, 0).UTC().Format(crashDate)
	}
	recs, err := k.Log()
	if err != nil {
		s.Notes = append(s.Notes, "log: "+err.Error())
	}
	// Uptime: the last log timestamp (local_clock since boot) is the
	// latest moment the dump proves the kernel was alive.
	if n := len(recs); n > 0 {
		sec := float64(recs[n-1].TsNsec) / 1e9
		s.UptimeSec = sec
		d := time.Duration(recs[n-1].TsNsec)
		s.Uptime = fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
		if days := int(d.Hours()) / 24; days > 0 {
			s.Uptime = fmt.Sprintf("%d days, %02d:%02d:%02d", days, int(d.Hours())%24, int(d.Minutes())%60, int(d.Seconds())%60)
		}
	}
	s.Panic = kernel.PanicMessage(recs)
	s.Notes = append(s.Notes, k.Warnings()...)
	for _, task := range k.Tasks {
		if task.Panic {
			pid := task.PID
			cpu := task.OnCPU.ID
			s.PanicPID, s.PanicComm, s.PanicTask, s.PanicCPU = &pid, task.Comm, fmt.Sprintf("%x", task.Addr), &cpu
			if task.CommSource != "" {
				s.Notes = append(s.Notes, fmt.Sprintf("the panicking task's command is from the kernel log (%s)", task.CommSource))
			}
		}
	}
	return s, nil
}

func (s *SysInfo) text(w io.Writer) error {
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%12s: %s\n", k, v)
		}
	}
	row("KERNEL", s.Kernel)
	df := strings.Join(s.Dumpfiles, " ")
	if s.Partial {
		df += "  [PARTIAL DUMP]"
	}
	row("DUMPFILE", df)
	row("CPUS", strconv.Itoa(s.CPUs))
	row("DATE", s.CrashTime)
	row("UPTIME", s.Uptime)
	row("TASKS", strconv.Itoa(s.Tasks))
	row("NODENAME", s.Nodename)
	row("RELEASE", s.Release)
	row("VERSION", s.Version)
	row("MACHINE", s.Machine)
	row("MEMORY", humanBytes(s.MemoryBytes))
	if s.Panic != "" {
		row("PANIC", strconv.Quote(s.Panic))
	}
	if s.PanicPID != nil {
		row("PID", strconv.Itoa(int(*s.PanicPID)))
		row("COMMAND", strconv.Quote(s.PanicComm))
		row("TASK", s.PanicTask)
		row("CPU", strconv.Itoa(*s.PanicCPU))
		row("STATE", "TASK_RUNNING (PANIC)")
	}
	for _, n := range s.Notes {
		row("NOTE", n)
	}
	return nil
}

func humanBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", b)
}

// PSEntry is one line of `ps`.
type PSEntry struct {
	PID     int32   `json:"pid"`
	PPID    int32   `json:"ppid"`
	CPU     int     `json:"cpu"`
	Task    string  `json:"task"`
	State   string  `json:"state"`
	MemPct  float64 `json:"mem_percent"`
	VSZKB   uint64  `json:"vsz_kb"`
	RSSKB   uint64  `json:"rss_kb"`
	Comm    string  `json:"comm"`
	Running bool    `json:"running"`
	Panic   bool    `json:"panic,omitempty"`
	Kthread bool    `json:"kernel_thread"`
	// Unreadable says why the task_struct is missing from the dump:
	// ppid, VSZ, RSS and %MEM are then unknown (shown as "?").
	Unreadable string `json:"unreadable,omitempty"`
}

// PSList is `ps`.
type PSList []PSEntry

// psFilter is ps's selection, as crash's ps -u, -k, -G and command names.
type psFilter struct {
	user, kernel, leaders bool
	comms                 []string
}

func (f psFilter) apply(l PSList, k *kernel.Kernel) PSList {
	leader := map[int32]bool{}
	for _, task := range k.Tasks {
		if task.PID == task.TGID {
			leader[task.PID] = true
		}
	}
	out := PSList{}
	for _, e := range l {
		switch {
		case f.user && (e.Kthread || e.Unreadable != ""),
			f.kernel && !e.Kthread,
			f.leaders && !leader[e.PID] && e.PID != 0:
			continue
		}
		if len(f.comms) > 0 && !slices.Contains(f.comms, e.Comm) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// crash's two-letter states by ps letter.
var stateNames = map[byte]string{'R': "RU", 'S': "IN", 'D': "UN", 'T': "ST", 't': "TR", 'X': "DE", 'Z': "ZO", 'P': "PA", 'I': "ID"}

// PS gathers `ps`, sorted by pid as crash does (idle tasks first).
func (t *Triage) PS() (PSList, error) {
	k := t.K
	// Only the total is needed here; MemInfo also walks every block
	// device's page cache.
	total, _ := k.TotalRAM()
	kb := k.Dump.PageSize() / 1024
	var out PSList
	for _, task := range k.Tasks {
		e := PSEntry{PID: task.PID, CPU: task.CPU, Task: fmt.Sprintf("%x", task.Addr), State: stateNames[task.State],
			Comm: task.Comm, Running: task.OnCPU != nil, Panic: task.Panic, Kthread: task.MM == 0}
		if e.State == "" {
			e.State = string(task.State)
		}
		if task.OnCPU != nil {
			e.CPU = task.OnCPU.ID
		}
		if task.Unreadable != "" {
			e.Unreadable, e.Kthread, e.Task = task.Unreadable, false, fmt.Sprintf("%x", task.Addr)
			if task.Addr == 0 {
				e.Task = "?"
			}
			out = append(out, e)
			continue
		}
		if !task.IsIdle {
			e.PPID, _ = k.Parent(task)
		}
		if m, err := k.TaskMemory(task); err == nil {
			e.VSZKB, e.RSSKB = m.VSZ*kb, m.RSS*kb
			if total > 0 {
				e.MemPct = float64(m.RSS) * 100 / float64(total)
			}
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].PID != out[j].PID {
			return out[i].PID < out[j].PID
		}
		return out[i].CPU < out[j].CPU
	})
	return out, nil
}

func (l PSList) text(w io.Writer) error {
	fmt.Fprintf(w, "%9s %7s %4s %16s %3s %5s %8s %8s  %s\n", "PID", "PPID", "CPU", "TASK", "ST", "%MEM", "VSZ", "RSS", "COMM")
	for _, e := range l {
		mark := " "
		if e.Running {
			mark = ">"
		}
		comm := e.Comm
		if e.Kthread {
			comm = "[" + comm + "]"
		}
		if e.Unreadable != "" {
			if comm == "" {
				comm = "?"
			}
			fmt.Fprintf(w, "%s%8d %7s %4d %16s %3s %5s %8s %8s  %s (task_struct not in the dump)\n", mark, e.PID, "?", e.CPU, e.Task, e.State, "?", "?", "?", comm)
			continue
		}
		fmt.Fprintf(w, "%s%8d %7d %4d %16s %3s %5.1f %8d %8d  %s\n", mark, e.PID, e.PPID, e.CPU, e.Task, e.State, e.MemPct, e.VSZKB, e.RSSKB, comm)
	}
	return nil
}

// BTFrame is one frame of `bt`.
type BTFrame struct {
	Level    int               `json:"level"`
	SP       string            `json:"sp"`
	PC       string            `json:"pc"`
	Function string            `json:"function"`
	Kind     string            `json:"kind"`
	Regs     map[string]string `json:"exception_registers,omitempty"`
	User     bool              `json:"user_mode,omitempty"`
	// Stack holds the frame's stack words (bt -f): from its SP up to the
	// next frame's.
	Stack []StackWord `json:"stack,omitempty"`
	// Source is the frame's source position (bt -l), innermost first:
	// code inlined into the frame's function comes before its call site.
	Source   []symbols.SourceLine `json:"source,omitempty"`
	NoSource string               `json:"no_source,omitempty"` // why there is none
}

// StackWord is one 8-byte stack slot of a frame.
type StackWord struct {
	Addr   string `json:"address"`
	Value  string `json:"value"`
	Symbol string `json:"symbol,omitempty"` // bt -F: the kernel symbol it points into
	// Unreadable says why the slot could not be read.
	Unreadable string `json:"unreadable,omitempty"`
}

// BTOptions selects bt's tasks and detail.
type BTOptions struct {
	All      bool
	PIDs     []int
	CPUs     []int // the tasks running on these CPUs (crash's bt -c)
	Words    bool  // each frame's stack words (crash's bt -f)
	Lines    bool  // each frame's source file and line, inlined calls too (bt -l)
	Symbolic bool  // words that point into kernel symbols shown as symbol+off (bt -F)
}

// maxFrameWords bounds the words shown for one frame: a kernel stack is
// 16 KiB (2048 words); a larger gap between two frames is not one frame.
const maxFrameWords = 2048

// BTTask is one task's `bt`.
type BTTask struct {
	PID     int32     `json:"pid"`
	Task    string    `json:"task"`
	CPU     int       `json:"cpu"`
	Command string    `json:"command"`
	Frames  []BTFrame `json:"frames"`
	Stopped string    `json:"stopped,omitempty"` // why the unwind ended early
	// Unreadable says why the task_struct is missing: the stack is the
	// CPU's, from its saved registers.
	Unreadable string `json:"unreadable,omitempty"`
}

// BTList is `bt`.
type BTList []BTTask

// BT unwinds the panicking task (or CPU 0's), every task, or the pids.
func (t *Triage) BT(all bool, pids []int) (BTList, error) {
	return t.BTWith(BTOptions{All: all, PIDs: pids})
}

// BTWith is bt with all its options.
func (t *Triage) BTWith(o BTOptions) (BTList, error) {
	all, pids := o.All, o.PIDs
	k := t.K
	var tasks []*kernel.Task
	switch {
	case all:
		tasks = k.Tasks
	case len(o.CPUs) > 0:
		for _, c := range o.CPUs {
			for _, task := range k.Tasks {
				if task.OnCPU != nil && task.OnCPU.ID == c {
					tasks = append(tasks, task)
				}
			}
		}
	case len(pids) > 0:
		for _, pid := range pids {
			found := false
			for _, task := range k.Tasks {
				if int(task.PID) == pid && (pid != 0 || task.OnCPU != nil) {
					tasks = append(tasks, task)
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("no task with pid %d", pid)
			}
		}
	default:
		for _, task := range k.Tasks {
			if task.Panic {
				tasks = append(tasks, task)
			}
		}
		if len(tasks) == 0 && len(k.Tasks) > 0 {
			tasks = append(tasks, k.Tasks[0])
		}
	}
	var out BTList
	for _, task := range tasks {
		bt := BTTask{PID: task.PID, Task: fmt.Sprintf("%x", task.Addr), CPU: task.CPU, Command: task.Comm, Frames: []BTFrame{}, Unreadable: task.Unreadable}
		if task.OnCPU != nil {
			bt.CPU = task.OnCPU.ID
		}
		frames, err := k.Backtrace(task)
		if err != nil {
			bt.Stopped = err.Error()
		}
		for i, f := range frames {
			name := k.SymbolName(f.PC)
			if i > 0 && f.Kind == unwind.KindCall {
				name = k.ReturnSymbolName(f.PC)
			}
			bf := BTFrame{Level: i, SP: fmt.Sprintf("%x", f.SP), PC: fmt.Sprintf("%x", f.PC), Function: name, Kind: f.Kind.String(), User: f.UserMode}
			if bf.Function == "" {
				bf.Function = "?"
			}
			if f.Kind == unwind.KindException || f.Kind == unwind.KindIRET || f.UserMode {
				bf.Regs = map[string]string{}
				for _, r := range btRegs {
					if v, ok := f.Regs.Get(r); ok {
						bf.Regs[r.String()] = fmt.Sprintf("%016x", v)
					}
				}
			}
			if o.Lines && !f.UserMode {
				// A return address is past the call: its line is the
				// call's, one byte back (as gdb does; crash looks up the
				// return address itself, which can name the next line).
				pc := f.PC
				if i > 0 && f.Kind == unwind.KindCall {
					pc--
				}
				if src, err := k.SourceLines(pc); err != nil {
					bf.NoSource = err.Error()
				} else {
					bf.Source = src
				}
			}
			bt.Frames = append(bt.Frames, bf)
		}
		if o.Words {
			for i := range bt.Frames {
				if i+1 >= len(frames) || bt.Frames[i].User {
					break
				}
				bt.Frames[i].Stack = t.stackWords(frames[i].SP, frames[i+1].SP, o.Symbolic)
			}
		}
		out = append(out, bt)
	}
	return out, nil
}

// stackWords reads the words of [from, to), two frames' stack pointers.
func (t *Triage) stackWords(from, to uint64, symbolic bool) []StackWord {
	if to <= from || (to-from)/8 > maxFrameWords {
		return nil
	}
	var out []StackWord
	for a := from; a < to; a += 8 {
		w := StackWord{Addr: fmt.Sprintf("%016x", a)}
		v, err := t.K.ReadU64(a)
		if err != nil {
			w.Value, w.Unreadable = "????????????????", err.Error()
		} else {
			w.Value = fmt.Sprintf("%016x", v)
			if symbolic {
				w.Symbol = crashSymbol(t.K.SymbolName(v))
				if w.Symbol == "" {
					// As crash: a pointer into a slab names its cache.
					if c := t.K.SlabCacheOf(v); c != "" {
						w.Symbol = "[" + c + "]"
					}
				}
			}
		}
		out = append(out, w)
	}
	return out
}

// printSource prints a frame's source lines as crash's bt -l does, one
// per level of inlining, innermost first.
func printSource(w io.Writer, f BTFrame) {
	if f.NoSource != "" {
		fmt.Fprintf(w, "    (no source line: %s)\n", f.NoSource)
	}
	for _, s := range f.Source {
		if s.Inlined {
			fmt.Fprintf(w, "    %s: %d (%s, inlined)\n", s.File, s.Line, s.Function)
		} else {
			fmt.Fprintf(w, "    %s: %d\n", s.File, s.Line)
		}
	}
}

// crashSymbol writes "name+0x1f" as crash does: "name+31", and "name"
// for an exact match.
func crashSymbol(s string) string {
	name, off, ok := strings.Cut(s, "+0x")
	if !ok {
		return s
	}
	n, err := strconv.ParseUint(off, 16, 64)
	if err != nil {
		return s
	}
	if n == 0 {
		return name
	}
	return fmt.Sprintf("%s+%d", name, n)
}

// printWords prints a frame's words two to a line, as crash does; with
// symbols, one word per line with the symbol beside it.
func printWords(w io.Writer, words []StackWord) {
	for i := 0; i < len(words); i += 2 {
		line := fmt.Sprintf("    %s:", strings.TrimLeft(words[i].Addr, "0"))
		for _, x := range words[i:min(i+2, len(words))] {
			v := x.Value
			if x.Symbol != "" {
				v = fmt.Sprintf("%-16s", x.Symbol)
			}
			line += " " + v
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

func (l BTList) text(w io.Writer) error {
	for i, bt := range l {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "PID: %-7d TASK: %s  CPU: %-3d COMMAND: %q\n", bt.PID, bt.Task, bt.CPU, bt.Command)
		if bt.Unreadable != "" {
			fmt.Fprintf(w, "    (task_struct not in the dump: %s; the stack is the CPU's, from its saved registers)\n", bt.Unreadable)
		}
		for _, f := range bt.Frames {
			if f.User {
				// The exception frame that entered the kernel from user space.
				fmt.Fprintf(w, "    [user space]\n")
			} else {
				// Frames found by following rbp, where no unwind data
				// covered the callee, are marked as guesses, as the
				// kernel's own traces mark unreliable entries.
				mark := ""
				if f.Kind == unwind.KindFramePointer.String() {
					mark = "? "
				}
				fmt.Fprintf(w, " #%-2d [%s] %s%s at %s\n", f.Level, f.SP, mark, strings.SplitN(f.Function, "+", 2)[0], f.PC)
			}
			if f.Regs != nil {
				printRegs(w, f.Regs)
			}
			printSource(w, f)
			printWords(w, f.Stack)
		}
		if bt.Stopped != "" {
			fmt.Fprintf(w, "    (backtrace stopped: %s)\n", bt.Stopped)
		}
	}
	return nil
}

// btRegs are the registers a frame of bt shows: those struct pt_regs
// saves, which printRegs lays out.
var btRegs = []amd64.Reg{amd64.RAX, amd64.RDX, amd64.RCX, amd64.RBX, amd64.RSI, amd64.RDI, amd64.RBP, amd64.RSP,
	amd64.R8, amd64.R9, amd64.R10, amd64.R11, amd64.R12, amd64.R13, amd64.R14, amd64.R15,
	amd64.RIP, amd64.EFLAGS, amd64.CS, amd64.SS}

func printRegs(w io.Writer, r map[string]string) {
	lines := [][]string{{"rip", "rsp", "eflags"}, {"rax", "rbx", "rcx"}, {"rdx", "rsi", "rdi"},
		{"rbp", "r8", "r9"}, {"r10", "r11", "r12"}, {"r13", "r14", "r15"}, {"cs", "ss"}}
	for _, line := range lines {
		var parts []string
		for _, name := range line {
			if v, ok := r[name]; ok {
				switch name {
				case "cs", "ss":
					v = v[len(v)-4:]
				case "eflags":
					v = v[len(v)-8:]
				}
				parts = append(parts, fmt.Sprintf("%s: %s", strings.ToUpper(name), v))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "    %s\n", strings.Join(parts, "  "))
		}
	}
}

// LogList is `log`.
type LogList []kernel.LogRecord

// Log gathers the kernel log.
func (t *Triage) Log() (LogList, error) {
	recs, err := t.K.Log()
	return LogList(recs), err
}

// crashDate is how crash writes a time (sys's DATE, log -T): UTC.
const crashDate = "Mon Jan _2 15:04:05 UTC 2006"

// WallLogRecord is a log record with its wall-clock time (log -T).
type WallLogRecord struct {
	kernel.LogRecord
	Time string `json:"time"`
}

// WallLog is `log -T`.
type WallLog []WallLogRecord

// LogWall is the log with wall-clock times, as crash's log -T: the boot
// time is the dump's CRASHTIME (whole seconds) less the uptime in whole
// seconds, so times are as exact as those seconds: to a second or two.
func (t *Triage) LogWall() (WallLog, error) {
	recs, err := t.K.Log()
	if err != nil {
		return nil, err
	}
	if !t.K.Info.HasCrashTime {
		return nil, fmt.Errorf("log -T: the dump's VMCOREINFO has no CRASHTIME to place the log's clock (QEMU dumps have none)")
	}
	if len(recs) == 0 {
		return WallLog{}, nil
	}
	// Whole seconds of uptime, as crash counts them: boot is CRASHTIME
	// less those, and each record that many seconds after boot.
	uptime := recs[len(recs)-1].TsNsec / 1e9
	boot := time.Unix(t.K.Info.CrashTime-int64(uptime), 0).UTC()
	out := make(WallLog, 0, len(recs))
	for _, r := range recs {
		at := boot.Add(time.Duration(r.TsNsec))
		out = append(out, WallLogRecord{r, at.Format(crashDate)})
	}
	return out, nil
}

func (l WallLog) text(w io.Writer) error {
	for _, r := range l {
		// crash indents a record's further lines under its first.
		prefix := "[" + r.Time + "] "
		lines := r.Lines()
		fmt.Fprintln(w, prefix+lines[0])
		for _, line := range lines[1:] {
			fmt.Fprintln(w, strings.Repeat(" ", len(prefix))+line)
		}
	}
	return nil
}

func (l LogList) text(w io.Writer) error {
	for _, r := range l {
		if _, err := fmt.Fprintln(w, r.String()); err != nil {
			return err
		}
	}
	return nil
}

// KmemInfo is `kmem -i`.
type KmemInfo struct {
	PageSize uint64    `json:"page_size"`
	Rows     []KmemRow `json:"rows"`
	Missing  []string  `json:"missing,omitempty"`
	raw      kernel.MemInfo
}

// KmemRow is one line: pages and what share of total memory they are.
type KmemRow struct {
	Name    string  `json:"name"`
	Pages   uint64  `json:"pages"`
	Bytes   uint64  `json:"bytes"`
	Percent float64 `json:"percent_of_total,omitempty"`
	// Of names what Percent is of, when not TOTAL MEM.
	Of string `json:"percent_of,omitempty"`
}

// Kmem gathers the memory summary.
func (t *Triage) Kmem() (*KmemInfo, error) {
	m := t.K.MemInfo()
	if m.Total == 0 {
		return nil, fmt.Errorf("total memory unknown: %s", strings.Join(m.Missing, "; "))
	}
	k := &KmemInfo{PageSize: m.PageSize, Missing: m.Missing, raw: m}
	add := func(name string, pages uint64, pct bool) {
		r := KmemRow{Name: name, Pages: pages, Bytes: pages * m.PageSize}
		if pct {
			r.Percent = float64(pages) * 100 / float64(m.Total)
		}
		k.Rows = append(k.Rows, r)
	}
	add("TOTAL MEM", m.Total, false)
	add("FREE", m.Free, true)
	add("USED", m.Used(), true)
	add("SHARED", m.Shared, true)
	add("BUFFERS", m.Buffers, true)
	add("CACHED", m.Cached, true)
	add("SLAB", m.Slab, true)
	pctOf := func(name string, pages, of uint64, ofName string) {
		r := KmemRow{Name: name, Pages: pages, Bytes: pages * m.PageSize, Of: ofName}
		if of > 0 {
			r.Percent = float64(pages) * 100 / float64(of)
		}
		k.Rows = append(k.Rows, r)
	}
	add("TOTAL HUGE", m.HugeTotal, false)
	pctOf("HUGE FREE", m.HugeFree, m.HugeTotal, "TOTAL HUGE")
	add("TOTAL SWAP", m.SwapTotal, false)
	pctOf("SWAP USED", m.SwapTotal-m.SwapFree, m.SwapTotal, "TOTAL SWAP")
	pctOf("SWAP FREE", m.SwapFree, m.SwapTotal, "TOTAL SWAP")
	add("COMMIT LIMIT", m.CommitLimit, false)
	pctOf("COMMITTED", m.Committed, m.CommitLimit, "TOTAL LIMIT")
	return k, nil
}

func (k *KmemInfo) text(w io.Writer) error {
	fmt.Fprintf(w, "%15s  %10s  %11s  %s\n", "", "PAGES", "TOTAL", "PERCENTAGE")
	for _, r := range k.Rows {
		pct := "----"
		switch r.Name {
		case "TOTAL MEM", "TOTAL HUGE", "TOTAL SWAP", "COMMIT LIMIT":
		default:
			of := r.Of
			if of == "" {
				of = "TOTAL MEM"
			}
			pct = fmt.Sprintf("%3.0f%% of %s", r.Percent, of)
		}
		// Blank lines between the groups, as crash prints them.
		if r.Name == "TOTAL HUGE" || r.Name == "TOTAL SWAP" || r.Name == "COMMIT LIMIT" {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%15s  %10d  %11s  %s\n", r.Name, r.Pages, humanBytes(r.Bytes), pct)
	}
	for _, m := range k.Missing {
		fmt.Fprintf(w, "  (not shown: %s)\n", m)
	}
	return nil
}

// runqResult is `runq`.
type runqResult []kernel.RunQueue

type runqJSONTask struct {
	Prio    int32  `json:"prio"`
	PID     int32  `json:"pid"`
	Task    string `json:"task"`
	Command string `json:"command"`
	Group   string `json:"cfs_rq,omitempty"`
}

type runqJSON struct {
	CPU     int            `json:"cpu"`
	Addr    string         `json:"runqueue"`
	Current *runqJSONTask  `json:"current,omitempty"`
	RTArray string         `json:"rt_prio_array"`
	RT      []runqJSONTask `json:"rt"`
	CFSRoot string         `json:"cfs_rb_root"`
	CFS     []runqJSONTask `json:"cfs"`
}

func queuedJSON(qs []kernel.QueuedTask) []runqJSONTask {
	out := []runqJSONTask{}
	for _, q := range qs {
		j := runqJSONTask{Prio: q.Prio, PID: q.Task.PID, Task: fmt.Sprintf("%x", q.Task.Addr), Command: q.Task.Comm}
		if q.Group != 0 {
			j.Group = fmt.Sprintf("%x", q.Group)
		}
		out = append(out, j)
	}
	return out
}

func (r runqResult) MarshalJSON() ([]byte, error) {
	var out []runqJSON
	for _, q := range r {
		j := runqJSON{CPU: q.CPU, Addr: fmt.Sprintf("%x", q.Addr), RTArray: fmt.Sprintf("%x", q.RTArray), CFSRoot: fmt.Sprintf("%x", q.CFSRoot),
			RT: queuedJSON(q.RT), CFS: queuedJSON(q.CFS)}
		if q.Curr != nil {
			j.Current = &runqJSONTask{Prio: 0, PID: q.Curr.PID, Task: fmt.Sprintf("%x", q.Curr.Addr), Command: q.Curr.Comm}
		}
		out = append(out, j)
	}
	return json.Marshal(out)
}

// text prints the queues as crash's runq does.
func (r runqResult) text(w io.Writer) error {
	line := func(t *kernel.Task) string {
		return fmt.Sprintf("PID: %-6d TASK: %x  COMMAND: %q", t.PID, t.Addr, t.Comm)
	}
	for i, q := range r {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "CPU %d RUNQUEUE: %x\n", q.CPU, q.Addr)
		if q.Curr != nil {
			fmt.Fprintf(w, "  CURRENT: %s\n", line(q.Curr))
		}
		fmt.Fprintf(w, "  RT PRIO_ARRAY: %x\n", q.RTArray)
		if len(q.RT) == 0 {
			fmt.Fprintf(w, "     [no tasks queued]\n")
		}
		for _, t := range q.RT {
			fmt.Fprintf(w, "     [%3d] %s\n", t.Prio, line(t.Task))
		}
		fmt.Fprintf(w, "  CFS RB_ROOT: %x\n", q.CFSRoot)
		if len(q.CFS) == 0 {
			fmt.Fprintf(w, "     [no tasks queued]\n")
		}
		for _, t := range q.CFS {
			fmt.Fprintf(w, "     [%3d] %s\n", t.Prio, line(t.Task))
		}
	}
	return nil
}

// Whatis describes a name from the vmlinux's DWARF; without a vmlinux
// (or one whose DWARF cannot be read) from the model's type source,
// mostly BTF (the dump's, or the vmlinux's .BTF), which has fewer names:
// its functions, per-CPU variables and types.
func (t *Triage) Whatis(name string) (*symbols.Description, error) {
	var dwarfErr error
	if t.K.Vmlinux != nil {
		d, err := t.K.Vmlinux.Whatis(name)
		if err == nil || errors.Is(err, symbols.ErrNotFound) {
			return d, err
		}
		dwarfErr = err
	}
	l, ok := t.K.Types.(symbols.TypeLookup)
	if !ok {
		if dwarfErr != nil {
			return nil, dwarfErr
		}
		return nil, fmt.Errorf("whatis: needs the vmlinux's DWARF or the kernel's BTF (type source: %s)", symbols.TypesName(t.K.Types))
	}
	d, err := symbols.WhatisFrom(l, name, symbols.TypesName(t.K.Types))
	if err != nil {
		return nil, errNoName(name, symbols.TypesName(t.K.Types), err, dwarfErr)
	}
	return d, nil
}

// whatisResult is `whatis`.
type whatisResult struct{ *symbols.Description }

func (r whatisResult) text(w io.Writer) error {
	_, err := fmt.Fprintln(w, r.Text)
	return err
}

// ZoneEntry is one zone of `kmem -z`.
type ZoneEntry struct {
	Node    int               `json:"node"`
	Index   int               `json:"zone"`
	Addr    string            `json:"address"`
	Name    string            `json:"name"`
	Spanned uint64            `json:"spanned_pages"`
	Present uint64            `json:"present_pages"`
	Managed uint64            `json:"managed_pages"`
	Free    uint64            `json:"free_pages"`
	Min     uint64            `json:"min_pages"`
	Low     uint64            `json:"low_pages"`
	High    uint64            `json:"high_pages"`
	Stats   []kernel.ZoneStat `json:"vm_stat,omitempty"`
}

// ZoneList is `kmem -z`.
type ZoneList []ZoneEntry

// KmemZones gathers every zone.
func (t *Triage) KmemZones() (ZoneList, error) {
	zs, err := t.K.Zones()
	if err != nil {
		return nil, err
	}
	var out ZoneList
	idx := map[int]int{}
	for _, z := range zs {
		out = append(out, ZoneEntry{Node: z.Node, Index: idx[z.Node], Addr: fmt.Sprintf("%x", z.Addr), Name: z.Name,
			Spanned: z.Spanned, Present: z.Present, Managed: z.Managed, Free: z.Free, Min: z.Min, Low: z.Low, High: z.High, Stats: z.Stats})
		idx[z.Node]++
	}
	return out, nil
}

// text prints each zone as crash's kmem -z does.
func (l ZoneList) text(w io.Writer) error {
	for _, z := range l {
		fmt.Fprintf(w, "NODE: %d  ZONE: %d  ADDR: %s  NAME: %q\n", z.Node, z.Index, z.Addr, z.Name)
		if z.Present == 0 {
			fmt.Fprintf(w, "  [unpopulated]\n\n")
			continue
		}
		present := ""
		if z.Present != z.Spanned {
			present = fmt.Sprintf("  PRESENT: %d", z.Present)
		}
		fmt.Fprintf(w, "  SIZE: %d%s  MIN/LOW/HIGH: %d/%d/%d\n", z.Spanned, present, z.Min, z.Low, z.High)
		fmt.Fprintf(w, "  VM_STAT:\n")
		width := 0
		for _, s := range z.Stats {
			width = max(width, len(s.Name))
		}
		for _, s := range z.Stats {
			fmt.Fprintf(w, "%*s: %d\n", width, s.Name, s.Value)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w)
	}
	return nil
}

// ModEntry is one module in `mod`.
type ModEntry struct {
	Module   string `json:"module"`
	Name     string `json:"name"`
	Base     string `json:"base"`
	Size     uint64 `json:"size"`
	State    string `json:"state"`
	Sections int    `json:"sections"`
	File     string `json:"file,omitempty"`
	Missing  string `json:"file_missing,omitempty"`
}

// ModList is `mod`.
type ModList []ModEntry

// Mod gathers the module list.
func (t *Triage) Mod() (ModList, error) {
	mods, err := t.K.Modules()
	if err != nil {
		return nil, err
	}
	out := ModList{}
	for _, m := range mods {
		e := ModEntry{Module: fmt.Sprintf("%x", m.Addr), Name: m.Name, Base: fmt.Sprintf("%x", m.Base), Size: m.Size, State: m.State, Sections: len(m.Sections)}
		if t.ModFiles != nil {
			if p, err := t.ModFiles.FindModule(m); err == nil {
				e.File = p
			} else {
				e.Missing = err.Error()
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func (l ModList) text(w io.Writer) error {
	fmt.Fprintf(w, "%16s  %-24s %16s  %8s  %-8s %s\n", "MODULE", "NAME", "BASE", "SIZE", "STATE", "OBJECT FILE")
	for _, m := range l {
		file := m.File
		if m.Missing != "" {
			file = "(not found: " + m.Missing + ")"
		}
		fmt.Fprintf(w, "%16s  %-24s %16s  %8d  %-8s %s\n", m.Module, m.Name, m.Base, m.Size, m.State, file)
	}
	if len(l) == 0 {
		fmt.Fprintln(w, "(no modules loaded)")
	}
	return nil
}
