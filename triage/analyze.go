package triage

import (
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
)

// Analysis is `analyze`: what crashed and why, with where each fact was
// read. Whatever could not be read is in Unknown, never guessed.
type Analysis struct {
	Release string `json:"release"`
	Node    string `json:"nodename"`
	// Class names the kind of crash: oom-panic, oops, module-oops, bug,
	// warn-panic, sysrq, soft-lockup, hard-lockup, hung-task, mce, panic,
	// or none (no panic: a dump of a running machine).
	Class   string `json:"class"`
	Summary string `json:"summary"`
	Facts   []Fact `json:"facts"`
	// Backtrace of the panicking task, with source lines.
	Backtrace []BTFrame `json:"backtrace,omitempty"`
	Memory    []KmemRow `json:"memory,omitempty"`
	TopRSS    []PSEntry `json:"top_rss,omitempty"`
	// TopSlabs are the slab caches holding the most memory (kmem -s).
	TopSlabs  []SlabTop `json:"top_slabs,omitempty"`
	OOMReport []string  `json:"oom_report,omitempty"`
	Modules   []string  `json:"modules,omitempty"`
	LogTail   []string  `json:"log_tail"`
	Unknown   []string  `json:"unknown,omitempty"`
}

// SlabTop is one of the largest slab caches.
type SlabTop struct {
	Name       string `json:"name"`
	ObjectSize uint64 `json:"object_size"`
	Allocated  uint64 `json:"allocated"`
	Total      uint64 `json:"total"`
	Bytes      uint64 `json:"bytes"` // slabs * slab size
}

// Fact is one finding and its source (a log record, a register, a
// variable in the dump).
type Fact struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

var (
	reRIP      = regexp.MustCompile(`RIP: [0-9a-f]{4}:(\S+)(?: \[(\S+)\])?`)
	reCR2Alone = regexp.MustCompile(`^CR2: ([0-9a-f]+)$`)
	reBugAdr   = regexp.MustCompile(`(?:address: |dereference at |paging request at )([0-9a-f]+)`)
)

// Analyze gathers the analysis.
func (t *Triage) Analyze() (*Analysis, error) {
	k := t.K
	a := &Analysis{LogTail: []string{}}
	unknown := func(what string, err error) { a.Unknown = append(a.Unknown, fmt.Sprintf("%s: %v", what, err)) }
	fact := func(name, value, source string) { a.Facts = append(a.Facts, Fact{name, value, source}) }
	if u, err := k.Uname(); err == nil {
		a.Release, a.Node = u.Release, u.Nodename
	} else {
		a.Release = k.Info.OSRelease
		unknown("utsname", err)
	}
	recs, err := k.Log()
	if err != nil {
		unknown("kernel log", err)
	}
	// The records that say what happened, searched from the end.
	find := func(subs ...string) (int, string) {
		for i := len(recs) - 1; i >= 0; i-- {
			for _, s := range subs {
				if strings.Contains(recs[i].Text, s) {
					return i, strings.TrimSpace(recs[i].Text)
				}
			}
		}
		return -1, ""
	}
	src := func(i int) string {
		return fmt.Sprintf("log record %d at [%s]", recs[i].Seq, strings.TrimSpace(strings.SplitN(recs[i].String(), "]", 2)[0][1:]))
	}
	pi, panicMsg := find("Kernel panic - not syncing")
	// The first line of an Oops says what faulted; "Oops:" follows it.
	oi, oops := find("BUG: unable to handle", "BUG: kernel NULL pointer dereference", "general protection fault", "kernel BUG at")
	if oi < 0 {
		oi, oops = find("Oops: ")
	}
	si, _ := find("sysrq: Trigger a crash", "SysRq : Trigger a crash")
	if pi >= 0 {
		fact("panic message", panicMsg, src(pi))
	}
	switch {
	case si >= 0:
		a.Class, a.Summary = "sysrq", "a crash triggered on purpose through sysrq (echo c > /proc/sysrq-trigger)"
		fact("trigger", strings.TrimSpace(recs[si].Text), src(si))
	case pi >= 0 && strings.Contains(panicMsg, "Out of memory") && strings.Contains(panicMsg, "panic_on_oom"):
		a.Class = "oom-panic"
		mode := "1 (system-wide)"
		if strings.Contains(panicMsg, "compulsory") {
			mode = "2 (compulsory: also for a constrained OOM)"
		}
		a.Summary = "the OOM killer found no memory to reclaim and panic_on_oom turned the out-of-memory condition into a panic"
		if v, err := t.readInt("sysctl_panic_on_oom"); err == nil {
			fact("panic_on_oom", fmt.Sprint(v), "sysctl_panic_on_oom in the dump")
		} else {
			fact("panic_on_oom", mode, src(pi))
		}
	case pi >= 0 && strings.Contains(panicMsg, "soft lockup"):
		a.Class, a.Summary = "soft-lockup", "a CPU ran kernel code without scheduling for longer than the soft-lockup threshold (softlockup_panic)"
	case pi >= 0 && strings.Contains(panicMsg, "hard LOCKUP"):
		a.Class, a.Summary = "hard-lockup", "the NMI watchdog found a CPU with interrupts off for too long (hardlockup_panic)"
	case pi >= 0 && strings.Contains(panicMsg, "hung_task"):
		a.Class, a.Summary = "hung-task", "tasks stayed in uninterruptible sleep past hung_task_timeout_secs (hung_task_panic)"
	case pi >= 0 && (strings.Contains(panicMsg, "Machine check") || strings.Contains(panicMsg, "MCE")):
		a.Class, a.Summary = "mce", "the CPU reported an uncorrectable hardware error (machine check)"
	case pi >= 0 && strings.Contains(panicMsg, "panic_on_warn"):
		a.Class, a.Summary = "warn-panic", "a WARN() fired and panic_on_warn made it a panic"
	case oi >= 0 && strings.HasPrefix(oops, "kernel BUG at"):
		a.Class, a.Summary = "bug", "a BUG() assertion in the kernel failed"
	case oi >= 0:
		a.Class, a.Summary = "oops", "the kernel faulted (an Oops)"
		if pi >= 0 && strings.Contains(panicMsg, "Fatal exception") {
			a.Summary += " and panic_on_oops, or the fault's context, made it fatal"
		}
	case pi >= 0:
		a.Class, a.Summary = "panic", "the kernel panicked"
	default:
		a.Class, a.Summary = "none", "no panic or Oops in the log: the machine was dumped while running (a hypervisor or live dump)"
	}
	if oi >= 0 {
		fact("fault", oops, src(oi))
		if m := reBugAdr.FindStringSubmatch(oops); m != nil {
			fact("faulting address", m[1], src(oi))
			if where, err := t.where(m[1]); err == nil {
				fact("faulting address lies in", where, "kmem "+m[1])
			} else {
				unknown("where the faulting address lies", err)
			}
		}
		for i := oi; i < len(recs) && i < oi+40; i++ {
			if m := reRIP.FindStringSubmatch(recs[i].Text); m != nil {
				fact("faulting instruction", m[1], src(i))
				if m[2] != "" && a.Class == "oops" {
					a.Class = "module-oops"
					a.Summary = "the kernel faulted in module " + m[2]
				}
				break
			}
		}
		// The fault handler prints the saved CR2 on a line of its own
		// after the trace; the register dump's CR2 is read later, live.
		for i := oi; i < len(recs) && i < oi+80; i++ {
			if m := reCR2Alone.FindStringSubmatch(strings.TrimSpace(recs[i].Text)); m != nil {
				fact("CR2 (the faulting address the fault handler saved)", m[1], src(i))
				break
			}
		}
	}
	// The task and CPU, from the model (panic_cpu and its run queue).
	var panicTask *kernel.Task
	for _, task := range k.Tasks {
		if task.Panic {
			panicTask = task
		}
	}
	if panicTask != nil {
		cpu := -1
		if panicTask.OnCPU != nil {
			cpu = panicTask.OnCPU.ID
		}
		if panicTask.Unreadable != "" {
			// Only what the CPU's note (and the log) say: no task_struct.
			from := "the panic CPU's saved registers (NT_PRSTATUS pr_pid)"
			if panicTask.CommSource != "" {
				from += "; command from " + panicTask.CommSource
			}
			fact("task", fmt.Sprintf("pid %d %q", panicTask.PID, panicTask.Comm), from)
		} else {
			fact("task", fmt.Sprintf("pid %d %q (task_struct %#x)", panicTask.PID, panicTask.Comm, panicTask.Addr), "the running task of the panic CPU's run queue")
		}
		fact("cpu", fmt.Sprint(cpu), k.PanicCPUSource)
		if panicTask.Unreadable != "" {
			a.Unknown = append(a.Unknown, "context (user process or kernel thread): "+panicTask.Unreadable)
		} else if panicTask.MM != 0 {
			fact("context", "a user process", "task_struct.mm")
		} else {
			fact("context", "a kernel thread", "task_struct.mm is NULL")
		}
		if bt, err := t.BTWith(BTOptions{PIDs: []int{int(panicTask.PID)}, Lines: true}); err == nil {
			for _, b := range bt {
				if b.Task == fmt.Sprintf("%x", panicTask.Addr) {
					a.Backtrace = b.Frames
				}
			}
			// Where the task was in user space when it entered the
			// kernel: its saved RIP and RSP, in its mappings.
			for _, f := range a.Backtrace {
				if !f.User {
					continue
				}
				for _, r := range []string{"rip", "rsp"} {
					if v := f.Regs[r]; v != "" {
						if where := t.userVMA(uint64Hex(v)); where != "" {
							fact("user "+strings.ToUpper(r), v+" in "+where, "the pt_regs saved on kernel entry, and the task's VMAs")
						}
					}
				}
			}
		} else {
			unknown("backtrace", err)
		}
	} else if a.Class != "none" {
		a.Unknown = append(a.Unknown, "the panicking task: no CPU is marked as the panic CPU")
	}
	// A hypervisor dump holds each CPU's control registers: CR2 is the
	// last page-fault address that CPU took.
	if qs := k.Dump.QEMUCPUs(); len(qs) > 0 && panicTask != nil && panicTask.OnCPU != nil {
		for _, q := range qs {
			if q.Index == panicTask.OnCPU.ID {
				fact("CR2 when dumped", fmt.Sprintf("%x", q.CR[2]), fmt.Sprintf("QEMU CPU state of CPU %d (the last page-fault address on that CPU)", q.Index))
			}
		}
	}
	if k.Info.HasCrashTime {
		fact("crash time", time.Unix(k.Info.CrashTime, 0).UTC().Format(crashDate), "VMCOREINFO CRASHTIME")
	}
	// Memory, when memory was the reason.
	if a.Class == "oom-panic" {
		if km, err := t.Kmem(); err == nil {
			a.Memory = km.Rows
		} else {
			unknown("memory summary", err)
		}
		if ps, err := t.PS(); err == nil {
			sort.SliceStable(ps, func(i, j int) bool { return ps[i].RSSKB > ps[j].RSSKB })
			a.TopRSS = ps[:min(5, len(ps))]
		} else {
			unknown("tasks' memory", err)
		}
		if cs, err := k.SlabCaches(); len(cs) > 0 {
			sort.SliceStable(cs, func(i, j int) bool { return cs[i].Slabs*cs[i].SlabSize > cs[j].Slabs*cs[j].SlabSize })
			for _, c := range cs[:min(5, len(cs))] {
				a.TopSlabs = append(a.TopSlabs, SlabTop{c.Name, c.ObjectSize, c.Allocated, c.Total, c.Slabs * c.SlabSize})
			}
			if err != nil {
				unknown("slab caches (the list was cut)", err)
			}
		} else if err != nil {
			unknown("slab caches", err)
		}
		if st, _ := find("invoked oom-killer"); st >= 0 {
			end := len(recs) - 1
			if pi >= 0 {
				end = pi
			}
			for i := st; i <= end && i < st+400; i++ {
				a.OOMReport = append(a.OOMReport, recs[i].String())
			}
		}
	}
	if mask, letters, err := t.taint(); err == nil {
		fact("taint", letters, fmt.Sprintf("tainted_mask %#x, spelled by the kernel's taint_flags", mask))
	} else {
		unknown("taint", err)
	}
	if mods, err := k.Modules(); err == nil {
		for _, m := range mods {
			a.Modules = append(a.Modules, m.Name)
		}
	} else {
		unknown("modules", err)
	}
	end := len(recs)
	if pi >= 0 {
		end = pi + 1
	}
	for i := max(0, end-20); i < end; i++ {
		a.LogTail = append(a.LogTail, recs[i].String())
	}
	return a, nil
}

// where says in one line where an address lies (kmem ADDR).
func (t *Triage) where(hex string) (string, error) {
	r, err := t.KmemAddr(hex)
	if err != nil {
		return "", err
	}
	switch {
	case r.SlabInfo != nil:
		o := r.SlabInfo
		state := "allocated"
		if !o.Allocated {
			state = "free"
		}
		return fmt.Sprintf("%s object %s + %d (%s, slab cache %s)", o.Name, o.Object, o.Offset, state, o.Cache), nil
	case r.Vmalloc != nil:
		return fmt.Sprintf("vmalloc area %s-%s from %s", r.Vmalloc.Start, r.Vmalloc.End, r.Vmalloc.Caller), nil
	case r.Stack != nil:
		return fmt.Sprintf("the kernel stack of pid %d %q", r.Stack.PID, r.Stack.Comm), nil
	case r.Symbol != "":
		return fmt.Sprintf("%s %s", r.Region, crashSymbol(r.Symbol)), nil
	case r.Region == "user":
		if where := t.userVMA(r.Addr); where != "" {
			return where, nil
		}
		if lim, err := t.K.Symbol("mmap_min_addr"); err == nil {
			if v, err := t.K.ReadU64(lim); err == nil && r.Addr < v {
				return fmt.Sprintf("user space below mmap_min_addr (%d), where nothing can be mapped: a NULL pointer (plus an offset) dereferenced", v), nil
			}
		}
		return "user space", nil
	}
	return r.Region, nil
}

// userVMA names the panicking task's mapping holding a user address, ""
// when there is no such task or mapping (or its VMAs cannot be read).
func (t *Triage) userVMA(addr uint64) string {
	var task *kernel.Task
	for _, tk := range t.K.Tasks {
		if tk.Panic && tk.MM != 0 {
			task = tk
		}
	}
	if task == nil {
		return ""
	}
	vmas, _ := t.K.VMAs(task)
	for _, v := range vmas {
		if addr >= v.Start && addr < v.End {
			name := v.Name
			switch {
			case name == "" && v.File != 0:
				name = fmt.Sprintf("a file (struct file %#x) whose path the dump does not hold: %s", v.File, v.NameErr)
			case name == "":
				name = "anonymous memory"
			}
			return fmt.Sprintf("pid %d's mapping %x-%x %s %s", task.PID, v.Start, v.End, v.Perms(), name)
		}
	}
	return ""
}

func uint64Hex(s string) uint64 {
	v, _ := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	return v
}

func (t *Triage) readInt(sym string) (int32, error) {
	a, err := t.K.Symbol(sym)
	if err != nil {
		return 0, err
	}
	var b [4]byte
	if err := t.K.Read(b[:], a); err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b[:])), nil
}

// taint reads tainted_mask and spells it with the kernel's own table
// (taint_flags[]: the letter for each bit, set and clear), as the
// kernel's "Tainted:" string does.
func (t *Triage) taint() (uint64, string, error) {
	k := t.K
	a, err := k.Symbol("tainted_mask")
	if err != nil {
		return 0, "", err
	}
	mask, err := k.ReadU64(a)
	if err != nil {
		return 0, "", err
	}
	if mask == 0 {
		return 0, "not tainted", nil
	}
	tf, err1 := k.Symbol("taint_flags")
	size, err2 := k.Types.Sizeof("taint_flag")
	cTrue, err3 := k.Types.Offset("taint_flag", "c_true")
	if err1 != nil || err2 != nil || err3 != nil || k.Vmlinux == nil {
		return mask, fmt.Sprintf("%#x (no taint_flags table to spell it)", mask), nil
	}
	_, symSize, err := k.Vmlinux.Symbol("taint_flags")
	if err != nil || size == 0 || symSize/size > 64 {
		return mask, fmt.Sprintf("%#x", mask), nil
	}
	cFalse, err := k.Types.Offset("taint_flag", "c_false")
	if err != nil {
		return mask, fmt.Sprintf("%#x", mask), nil
	}
	// As print_tainted(): each flag's letter when set, its other
	// character (a space, or G for the proprietary flag) when not.
	var b strings.Builder
	for i := uint64(0); i < symSize/size; i++ {
		off := cFalse
		if mask&(1<<i) != 0 {
			off = cTrue
		}
		var c [1]byte
		if err := k.Read(c[:], tf+i*size+off); err != nil {
			return mask, fmt.Sprintf("%#x", mask), nil
		}
		b.WriteByte(c[0])
	}
	return mask, strings.TrimRight(b.String(), " "), nil
}

func (a *Analysis) text(w io.Writer) error {
	fmt.Fprintf(w, "# Crash analysis: %s %s\n\n", a.Node, a.Release)
	fmt.Fprintf(w, "**%s**: %s.\n\n", a.Class, a.Summary)
	fmt.Fprintf(w, "| fact | value | from |\n|---|---|---|\n")
	for _, f := range a.Facts {
		fmt.Fprintf(w, "| %s | `%s` | %s |\n", f.Name, strings.ReplaceAll(f.Value, "|", "\\|"), f.Source)
	}
	if len(a.Backtrace) > 0 {
		fmt.Fprintf(w, "\n## Backtrace of the panicking task\n\n```\n")
		for _, f := range a.Backtrace {
			if f.User {
				fmt.Fprintf(w, "    [user space] RIP %s RSP %s\n", f.Regs["rip"], f.Regs["rsp"])
				continue
			}
			line := ""
			if len(f.Source) > 0 {
				s := f.Source[len(f.Source)-1]
				line = fmt.Sprintf("  %s:%d", s.File, s.Line)
			}
			fmt.Fprintf(w, " #%-2d %s%s\n", f.Level, f.Function, line)
		}
		fmt.Fprintf(w, "```\n")
	}
	if len(a.Memory) > 0 {
		fmt.Fprintf(w, "\n## Memory\n\n| | pages | bytes |\n|---|---|---|\n")
		for _, r := range a.Memory {
			fmt.Fprintf(w, "| %s | %d | %s |\n", r.Name, r.Pages, humanBytes(r.Bytes))
		}
		fmt.Fprintf(w, "\nLargest tasks by RSS (from each task's mm counters):\n\n| pid | comm | RSS | %%MEM |\n|---|---|---|---|\n")
		for _, e := range a.TopRSS {
			fmt.Fprintf(w, "| %d | %s | %d kB | %.1f |\n", e.PID, e.Comm, e.RSSKB, e.MemPct)
		}
		if len(a.TopSlabs) > 0 {
			fmt.Fprintf(w, "\nLargest slab caches (kmem -s):\n\n| cache | object size | allocated | total | memory |\n|---|---|---|---|---|\n")
			for _, c := range a.TopSlabs {
				fmt.Fprintf(w, "| %s | %d | %d | %d | %s |\n", c.Name, c.ObjectSize, c.Allocated, c.Total, humanBytes(c.Bytes))
			}
		}
	}
	if len(a.OOMReport) > 0 {
		fmt.Fprintf(w, "\n## The kernel's OOM report\n\n```\n%s\n```\n", strings.Join(a.OOMReport, "\n"))
	}
	if len(a.Modules) > 0 {
		fmt.Fprintf(w, "\n## Modules loaded\n\n%s\n", strings.Join(a.Modules, " "))
	}
	fmt.Fprintf(w, "\n## Log up to the panic\n\n```\n%s\n```\n", strings.Join(a.LogTail, "\n"))
	if len(a.Unknown) > 0 {
		fmt.Fprintf(w, "\n## Not read\n\n")
		for _, u := range a.Unknown {
			fmt.Fprintf(w, "- %s\n", u)
		}
	}
	return nil
}
