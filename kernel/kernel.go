package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// MaxTasks bounds every walk of the task lists: a corrupted list with a
// cycle or garbage ends with an error, never a hang.
const MaxTasks = 1 << 22

// Kernel is the crashed kernel.
type Kernel struct {
	Dump    *vmcore.Dump
	VM      *vmcore.Kernel
	Vmlinux *symbols.Vmlinux // nil when working from the dump alone
	Syms    Symbols
	// Types is the kernel's type information: the vmlinux's .BTF, else
	// its DWARF, else the dump's BTF; symbols.NoTypes when there is none,
	// and then only what needs no struct layout works (CPUs, their
	// registers, memory, symbols).
	Types symbols.Types
	Info  *vmcore.VMCOREINFO
	KASLR uint64

	CPUs     []*CPU
	Tasks    []*Task // running tasks first in CPU order, then by pid
	PanicCPU int     // -1 when the kernel did not panic (a hypervisor dump)
	// PanicCPUSource says where PanicCPU was read: the panic_cpu
	// variable, or the kernel log when no symbol locates it.
	PanicCPUSource string

	warnMu   sync.Mutex
	warnings []string // things that could not be read, said once

	byAddr map[uint64]*Task
	off    offsets
	mu     sync.Mutex
	userAS map[uint64]*vmcore.PageTable

	unwOnce      sync.Once
	unw          *unwind.Unwinder
	unwErr       error
	stateOnce    sync.Once
	stateLetters []byte

	rssOnce sync.Once
	rss     rssLayout

	modOnce sync.Once
	modules []*Module
	modErr  error

	slubOnce   sync.Once
	slubL      slubLayout
	slabIxOnce sync.Once
	slabIx     map[uint64]*SlabCache
	slabIxErr  error
	memOnce    sync.Once
	mem        memLayout
}

// CPU is one CPU of the machine.
type CPU struct {
	ID   int
	Curr *Task // rq->curr
	Idle *Task // rq->idle
	// Regs is what the CPU saved at the crash, nil if nothing.
	Regs       *amd64.Regs
	RegsSource string
	// GSBaseValid says the CPU saved its real GS base (QEMU's notes),
	// which Regs then holds; kdump saves the inactive (user) one, which
	// Regs leaves unknown.
	GSBaseValid bool
	// NotePID is the pid of the task the CPU ran when it saved its
	// registers (NT_PRSTATUS pr_pid), when HasNotePID: a hypervisor's
	// notes carry a CPU number there instead.
	NotePID    int32
	HasNotePID bool
}

// Task is one task_struct.
type Task struct {
	Addr    uint64
	PID     int32
	TGID    int32
	Comm    string
	State   byte // ps letter: R S D T t X Z P I
	CPU     int  // task's CPU (where it last ran)
	OnCPU   *CPU // the CPU it runs on at the crash, or nil
	IsIdle  bool // a CPU's idle task (pid 0)
	Panic   bool // the task that panicked
	Stack   uint64
	MM      uint64
	SP      uint64 // thread.sp
	Kthread bool
	// Unreadable says why the task_struct could not be read. Such a task
	// is known only as what a CPU ran (rq->curr and the CPU's saved
	// registers and pid); its other fields are unknown, not zero.
	Unreadable string
	// CommSource says where Comm came from when not from the
	// task_struct: the kernel log line that named the task.
	CommSource string
}

// offsets are the struct layouts this package reads, from k.Types.
type offsets struct {
	taskTasks, taskPID, taskTGID, taskComm, taskState, taskStack uint64
	taskSP, taskMM, taskCPU, taskSignal, taskThreadNode          uint64
	taskExitState, taskFlags                                     uint64
	commLen                                                      uint64 // TASK_COMM_LEN
	signalThreadHead                                             uint64
	rqCurr, rqIdle                                               uint64
	mmPGD                                                        uint64
	frame                                                        amd64.Layout // struct inactive_task_frame
	hasFrame                                                     bool
}

// Symbols is where the model finds kernel symbols: a vmlinux shifted by
// KASLR, or the kernel's own kallsyms read from the dump.
type Symbols interface {
	Address(name string) (uint64, error)
	Lookup(addr uint64) (name string, off uint64, ok bool)
}

// SymbolTyper is an optional part of Symbols: a symbol's nm type letter.
type SymbolTyper interface {
	TypeLetter(name string) (byte, bool)
}

// SymbolType is a kernel symbol's nm type letter (T, D, B, R...).
func (k *Kernel) SymbolType(name string) (byte, bool) {
	if st, ok := k.Syms.(SymbolTyper); ok {
		return st.TypeLetter(name)
	}
	return 0, false
}

func (s vmlinuxSymbols) TypeLetter(name string) (byte, bool) { return s.v.TypeLetter(name) }

type vmlinuxSymbols struct {
	v     *symbols.Vmlinux
	kaslr uint64
}

func (s vmlinuxSymbols) Address(name string) (uint64, error) { return s.v.Address(name, s.kaslr) }
func (s vmlinuxSymbols) Lookup(addr uint64) (string, uint64, bool) {
	return s.v.SymbolAt(addr - s.kaslr)
}

// Load builds the model from a dump and its vmlinux: it reads the per-CPU
// run queues and walks every task list once. Types come from the
// vmlinux's .BTF, else its DWARF, else the dump's BTF; with none the
// model holds the CPUs only (see HasTypes).
func Load(d *vmcore.Dump, v *symbols.Vmlinux) (*Kernel, error) {
	info, err := checkVmlinux(d, v)
	if err != nil {
		return nil, err
	}
	syms := vmlinuxSymbols{v, info.KernelOffset}
	types, err := v.Types()
	if err != nil {
		// Forced to one of the vmlinux's sources (symbols.TypesEnv), the
		// dump's BTF is not a substitute.
		mode, merr := symbols.TypesMode()
		if merr != nil {
			return nil, merr
		}
		var berr error
		types = nil
		if mode == "auto" {
			vm, kerr := d.Kernel()
			if kerr != nil {
				return nil, kerr
			}
			var b *symbols.BTF
			if b, berr = dumpBTF(dumpMem{vm}, syms); berr == nil {
				types = b
			}
		}
		if types == nil {
			reason := err.Error()
			if berr != nil {
				reason += "; " + berr.Error()
			}
			types = symbols.NoTypes{Reason: reason}
		}
	}
	return load(d, info, v, syms, types)
}

// LoadWithTypes is Load with the type source given (a test compares
// sources; a tool may bring its own).
func LoadWithTypes(d *vmcore.Dump, v *symbols.Vmlinux, types symbols.Types) (*Kernel, error) {
	info, err := checkVmlinux(d, v)
	if err != nil {
		return nil, err
	}
	return load(d, info, v, vmlinuxSymbols{v, info.KernelOffset}, types)
}

// checkVmlinux reads VMCOREINFO and checks that v is the dump's kernel.
func checkVmlinux(d *vmcore.Dump, v *symbols.Vmlinux) (*vmcore.VMCOREINFO, error) {
	info, err := d.VMCOREINFO()
	if err != nil {
		return nil, err
	}
	if !info.HasKernelOffset {
		return nil, errors.New("VMCOREINFO has no KERNELOFFSET: cannot place the vmlinux symbols")
	}
	if bid := v.BuildID(); bid != "" && info.BuildID != "" && !strings.EqualFold(bid, info.BuildID) {
		release := "unknown release"
		if b, err := v.Banner(); err == nil {
			if f := strings.Fields(b); len(f) >= 3 {
				release = f[2] // "Linux version <release> ..."
			}
		}
		return nil, fmt.Errorf("%s is not the kernel of this dump: it is %s (build id %s), the dump is %s (build id %s)", v.Path(), release, bid, info.OSRelease, info.BuildID)
	}
	return info, nil
}

var errNoDumpBTF = errors.New("the dumped kernel has no BTF (__start_BTF/__stop_BTF)")

// dumpBTF reads the kernel's own BTF from the dumped memory
// (__start_BTF..__stop_BTF, kernels built with CONFIG_DEBUG_INFO_BTF).
func dumpBTF(mem dumpMem, syms Symbols) (*symbols.BTF, error) {
	start, err1 := syms.Address("__start_BTF")
	stop, err2 := syms.Address("__stop_BTF")
	if err1 != nil || err2 != nil || stop <= start || stop-start > 1<<28 {
		return nil, errNoDumpBTF
	}
	raw := make([]byte, stop-start)
	if err := mem.Read(raw, start); err != nil {
		return nil, fmt.Errorf("the kernel's BTF at 0x%x: %w", start, err)
	}
	if allZero(raw) {
		// Pages makedumpfile dropped as zero pages read as zeros too.
		return nil, fmt.Errorf("%w: its %d bytes at 0x%x are all zero", errNoDumpBTF, len(raw), start)
	}
	b, err := symbols.ParseBTF(raw)
	if err != nil {
		return nil, fmt.Errorf("the kernel's BTF at 0x%x: %w", start, err)
	}
	b.SetOrigin("BTF (the dump's __start_BTF)")
	return b, nil
}

// LoadFromDump builds the model without a vmlinux: symbols from the
// kernel's kallsyms and types from its BTF, both in the dumped memory
// (kernels 6.0+ built with CONFIG_DEBUG_INFO_BTF).
func LoadFromDump(d *vmcore.Dump) (*Kernel, error) {
	info, err := d.VMCOREINFO()
	if err != nil {
		return nil, err
	}
	vm, err := d.Kernel()
	if err != nil {
		return nil, err
	}
	mem := dumpMem{vm}
	ks, err := symbols.LoadKallsyms(mem, info.Symbols)
	if errors.Is(err, symbols.ErrNoKallsyms) {
		// Before 6.0 VMCOREINFO does not locate kallsyms: what remains
		// is what the dump itself says (its CPUs' saved registers, its
		// memory through the page tables, the log and the few symbols
		// VMCOREINFO names).
		why := fmt.Sprintf("%s: no vmlinux given and %v: give the vmlinux", strings.Join(d.Files(), ", "), err)
		return load(d, info, nil, infoSymbols(info.Symbols), symbols.NoTypes{Reason: why})
	}
	if err != nil {
		return nil, fmt.Errorf("%s: no vmlinux given and %w", strings.Join(d.Files(), ", "), err)
	}
	b, err := dumpBTF(mem, ks)
	if err != nil {
		if errors.Is(err, errNoDumpBTF) {
			// What needs no type still works: the CPUs, their registers,
			// memory and kallsyms' symbols.
			return load(d, info, nil, ks, symbols.NoTypes{Reason: fmt.Sprintf("%s: no vmlinux given and %v: give the vmlinux", strings.Join(d.Files(), ", "), err)})
		}
		return nil, err
	}
	return load(d, info, nil, ks, b)
}

// infoSymbols are the symbols VMCOREINFO names (SYMBOL(name)=addr), all
// a dump without kallsyms and without its vmlinux has. With no sizes an
// address is named only where a symbol starts.
type infoSymbols map[string]uint64

func (s infoSymbols) Address(name string) (uint64, error) {
	if a, ok := s[name]; ok {
		return a, nil
	}
	return 0, fmt.Errorf("%w: %s (VMCOREINFO names only %d symbols and the dump has no kallsyms)", symbols.ErrNoSymbol, name, len(s))
}

func (s infoSymbols) Lookup(addr uint64) (string, uint64, bool) {
	best := ""
	for n, a := range s {
		if a == addr && (best == "" || n < best) {
			best = n
		}
	}
	return best, 0, best != ""
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

type dumpMem struct{ vm *vmcore.Kernel }

func (m dumpMem) Read(p []byte, addr uint64) error { _, err := m.vm.Read(p, addr); return err }

func load(d *vmcore.Dump, info *vmcore.VMCOREINFO, v *symbols.Vmlinux, syms Symbols, b symbols.Types) (*Kernel, error) {
	vm, err := d.Kernel()
	if err != nil {
		return nil, err
	}
	k := &Kernel{Dump: d, VM: vm, Vmlinux: v, Syms: syms, Types: b, Info: info, KASLR: info.KernelOffset,
		byAddr: map[uint64]*Task{}, userAS: map[uint64]*vmcore.PageTable{}, PanicCPU: -1}
	// What needs no struct layout first: the direct map's base, the CPUs
	// and their saved registers (a CPU's saved pid and registers stand in
	// for its task when the task_struct is not in the dump, or when there
	// are no types at all).
	if pob, err := k.Symbol("page_offset_base"); err == nil {
		if base, err := k.ReadU64(pob); err == nil {
			vm.SetDirectMap(base)
		}
	}
	if err := k.loadCPUs(); err != nil {
		return nil, err
	}
	k.loadRegisters()
	if none, ok := b.(symbols.NoTypes); ok {
		k.loadWithoutTypes(none)
		return k, nil
	}
	if err := k.loadOffsets(); err != nil {
		return nil, err
	}
	if err := k.loadTasks(); err != nil {
		return nil, err
	}
	return k, nil
}

// loadWithoutTypes builds what needs no struct layout: the CPUs, each
// with its saved registers and one task standing for what it ran (pid
// from its note when the note has one), memory and symbols.
func (k *Kernel) loadWithoutTypes(none symbols.NoTypes) {
	k.warn("%v: only the CPUs and their saved registers are shown, one thread per CPU", none.Err())
	why := none.Err().Error()
	for _, c := range k.CPUs {
		t := noteTask(c, 0, why)
		t.TGID = t.PID
		t.OnCPU = c
		t.Comm = fmt.Sprintf("cpu%d", c.ID)
		c.Curr = t
		k.Tasks = append(k.Tasks, t)
	}
	// The log is decoded once for the panic CPU and every CPU's command.
	recs, _ := k.Log()
	if k.PanicCPU < 0 {
		if cpu, line, ok := k.panicCPUFromLog(recs); ok {
			k.PanicCPU, k.PanicCPUSource = cpu, fmt.Sprintf("the kernel log (%q) and that CPU's saved pid", line)
			k.warn("the panicking CPU is %d, from %s", cpu, k.PanicCPUSource)
		}
	}
	for _, c := range k.CPUs {
		if c.HasNotePID && c.NotePID > 0 {
			if comm, _ := k.commInLog(recs, c.ID, c.NotePID); comm != "" {
				c.Curr.Comm, c.Curr.CommSource = comm, "kernel log"
			}
		}
	}
	if k.PanicCPU >= 0 {
		k.CPUs[k.PanicCPU].Curr.Panic = true
	}
}

// panicCPUFromLog finds the panicking CPU in the kernel's own log when no
// symbol locates panic_cpu: the "CPU: N PID: P Comm: ..." line that
// panic()'s dump_stack prints after "Kernel panic - not syncing" (or the
// oops before it printed, or the oops that went to kdump without a
// panic), taken only if CPU N's saved note holds pid P.
func (k *Kernel) panicCPUFromLog(recs []LogRecord) (int, string, bool) {
	// The last panic message, or (a kernel that went to kdump straight
	// from an oops, without panic()) the last oops header.
	at := -1
	for _, prefix := range []string{"Kernel panic - not syncing", "Oops: "} {
		for i := len(recs) - 1; i >= 0 && at < 0; i-- {
			if strings.HasPrefix(recs[i].Text, prefix) {
				at = i
			}
		}
	}
	if at < 0 {
		return 0, "", false
	}
	try := func(i int) (int, string, bool) {
		m := logTaskLine.FindStringSubmatch(recs[i].Text)
		if m == nil {
			return 0, "", false
		}
		cpu, err1 := strconv.Atoi(m[1])
		pid, err2 := strconv.Atoi(m[2])
		if err1 != nil || err2 != nil || cpu < 0 || cpu >= len(k.CPUs) {
			return 0, "", false
		}
		c := k.CPUs[cpu]
		if !c.HasNotePID || int(c.NotePID) != pid {
			return 0, "", false
		}
		return cpu, strings.TrimSpace(recs[i].Text), true
	}
	for i := at + 1; i < len(recs) && i <= at+4; i++ {
		if cpu, line, ok := try(i); ok {
			return cpu, line, true
		}
	}
	for i := at - 1; i >= 0; i-- {
		if logTaskLine.MatchString(recs[i].Text) {
			return try(i)
		}
	}
	return 0, "", false
}

// HasTypes says whether the model has type information; without it only
// the CPUs, their registers, memory and symbols are known.
func (k *Kernel) HasTypes() bool {
	_, none := k.Types.(symbols.NoTypes)
	return !none
}

func (k *Kernel) warn(format string, args ...any) {
	k.warnMu.Lock()
	k.warnings = append(k.warnings, fmt.Sprintf(format, args...))
	k.warnMu.Unlock()
}

// Warnings returns what could not be read so far. Lazily loaded parts
// (modules, the unwinder) add to it while sessions run, so it is a copy.
func (k *Kernel) Warnings() []string {
	k.warnMu.Lock()
	defer k.warnMu.Unlock()
	return append([]string(nil), k.warnings...)
}

// offsetGetter looks struct members up, collecting each one missing in
// errs, so that one error names them all.
func offsetGetter(b symbols.Types, errs *[]error) func(structName, member string) uint64 {
	return func(structName, member string) uint64 {
		n, err := b.Offset(structName, member)
		if err != nil {
			*errs = append(*errs, err)
		}
		return n
	}
}

func (k *Kernel) loadOffsets() error {
	b := k.Types
	o := &k.off
	var errs []error
	get := offsetGetter(b, &errs)
	try := func(s string, ms ...string) uint64 {
		for _, m := range ms {
			if n, err := b.Offset(s, m); err == nil {
				return n
			}
		}
		errs = append(errs, fmt.Errorf("struct %s has none of %v", s, ms))
		return 0
	}
	o.taskTasks = get("task_struct", "tasks")
	o.taskPID = get("task_struct", "pid")
	o.taskTGID = get("task_struct", "tgid")
	o.taskComm = get("task_struct", "comm")
	var err error
	if o.commLen, err = k.arrayLen("task_struct", "comm", 1, 256); err != nil { // TASK_COMM_LEN
		errs = append(errs, err)
	}
	o.taskState = try("task_struct", "__state", "state")
	o.taskStack = get("task_struct", "stack")
	o.taskSP = get("task_struct", "thread.sp")
	o.taskMM = get("task_struct", "mm")
	o.taskCPU = try("task_struct", "cpu", "thread_info.cpu")
	o.taskSignal = get("task_struct", "signal")
	o.taskThreadNode = get("task_struct", "thread_node")
	o.taskExitState = get("task_struct", "exit_state")
	o.taskFlags = get("task_struct", "flags")
	o.signalThreadHead = get("signal_struct", "thread_head")
	o.rqCurr = get("rq", "curr")
	o.rqIdle = get("rq", "idle")
	o.mmPGD = get("mm_struct", "pgd")
	if len(errs) > 0 {
		return fmt.Errorf("kernel type information: %w", errors.Join(errs...))
	}
	// The frame __switch_to_asm leaves at thread.sp (v4.9+); its members
	// changed over time, so each is looked up by name.
	// It holds a few saved registers: a size over a page is not that
	// struct, and would size every sleeping task's read.
	if size, err := b.Sizeof("inactive_task_frame"); err == nil && size > 0 && size <= 4096 {
		o.frame = amd64.Layout{Name: "inactive_task_frame", Size: size}
		for _, m := range frameMembers {
			if n, err := b.Offset("inactive_task_frame", m.member); err == nil {
				o.frame.Fields = append(o.frame.Fields, amd64.Field{Reg: m.reg, Off: n})
			}
		}
		ret, hasRet := o.frame.Offset(amd64.RIP)
		o.hasFrame = (hasRet && ret != 0) || len(o.frame.Fields) == len(frameMembers)
	} else {
		k.warn("no struct inactive_task_frame: sleeping tasks' registers are unknown")
	}
	return nil
}

// frameMembers are the registers struct inactive_task_frame saves, by
// member name.
var frameMembers = []struct {
	reg    amd64.Reg
	member string
}{{amd64.R15, "r15"}, {amd64.R14, "r14"}, {amd64.R13, "r13"}, {amd64.R12, "r12"}, {amd64.RBX, "bx"}, {amd64.RBP, "bp"}, {amd64.RIP, "ret_addr"}}

// arrayLen returns the length of an array member from the type
// information, which must lie in [lo, hi]: a length sizes a read.
func (k *Kernel) arrayLen(structName, member string, lo, hi uint64) (uint64, error) {
	n, err := k.Types.ArrayLen(structName, member)
	if err == nil && (n < lo || n > hi) {
		err = fmt.Errorf("%s.%s has %d elements, not %d to %d", structName, member, n, lo, hi)
	}
	return n, err
}

// Symbol returns a kernel symbol's run-time address.
func (k *Kernel) Symbol(name string) (uint64, error) {
	return k.Syms.Address(name)
}

// Read reads kernel virtual memory.
func (k *Kernel) Read(p []byte, addr uint64) error {
	_, err := k.VM.Read(p, addr)
	return err
}

// ReadU64 reads one kernel word.
func (k *Kernel) ReadU64(addr uint64) (uint64, error) {
	var b [8]byte
	if err := k.Read(b[:], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (k *Kernel) readU32(addr uint64) (uint32, error) {
	var b [4]byte
	if err := k.Read(b[:], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// PerCPU returns the address of per-CPU variable name on cpu.
func (k *Kernel) PerCPU(name string, cpu int) (uint64, error) {
	sym, err := k.Symbol(name)
	if err != nil {
		return 0, err
	}
	off, err := k.perCPUOffset(cpu)
	if err != nil {
		return 0, err
	}
	return sym + off, nil
}

func (k *Kernel) perCPUOffset(cpu int) (uint64, error) {
	base, err := k.Symbol("__per_cpu_offset")
	if err != nil {
		return 0, err
	}
	return k.ReadU64(base + uint64(cpu)*8)
}

func (k *Kernel) loadCPUs() error {
	addr, err := k.Symbol("nr_cpu_ids")
	if _, bare := k.Syms.(infoSymbols); bare && err != nil {
		// No symbols: a CPU for each saved register set in the dump,
		// numbered in their order.
		n := len(k.Dump.PRStatus())
		if q := len(k.Dump.QEMUCPUs()); q > 0 {
			n = q
		}
		if n == 0 || n > 1<<16 {
			return fmt.Errorf("%s: %d CPU register notes and no nr_cpu_ids to count the CPUs by", k.Dump.Files()[0], n)
		}
		for cpu := 0; cpu < n; cpu++ {
			k.CPUs = append(k.CPUs, &CPU{ID: cpu})
		}
		return nil
	}
	if err != nil {
		return err
	}
	n, err := k.readU32(addr)
	if err != nil {
		return fmt.Errorf("nr_cpu_ids: %w", err)
	}
	var size uint64
	if k.Vmlinux != nil {
		_, size, _ = k.Vmlinux.Symbol("__per_cpu_offset")
	}
	if n == 0 || n > 1<<16 || (size > 0 && uint64(n) > size/8) {
		return fmt.Errorf("nr_cpu_ids %d is not a CPU count", n)
	}
	for cpu := 0; cpu < int(n); cpu++ {
		k.CPUs = append(k.CPUs, &CPU{ID: cpu})
	}
	if a, err := k.Symbol("panic_cpu"); err == nil {
		if v, err := k.readU32(a); err == nil && int32(v) >= 0 && int(v) < len(k.CPUs) {
			k.PanicCPU, k.PanicCPUSource = int(int32(v)), "panic_cpu"
		}
	}
	return nil
}

// readTask reads the fields of the task_struct at addr.
func (k *Kernel) readTask(addr uint64) (*Task, error) {
	if t := k.byAddr[addr]; t != nil {
		return t, nil
	}
	o := &k.off
	end := max(o.taskComm+o.commLen, o.taskPID+4, o.taskTGID+4, o.taskState+4, o.taskStack+8, o.taskSP+8,
		o.taskMM+8, o.taskCPU+4, o.taskExitState+4, o.taskFlags+4)
	buf := make([]byte, end)
	if err := k.Read(buf, addr); err != nil {
		return nil, fmt.Errorf("task_struct at 0x%x: %w", addr, err)
	}
	le := binary.LittleEndian
	comm := buf[o.taskComm : o.taskComm+o.commLen]
	if i := strings.IndexByte(string(comm), 0); i >= 0 {
		comm = comm[:i]
	}
	t := &Task{
		Addr:    addr,
		PID:     int32(le.Uint32(buf[o.taskPID:])),
		TGID:    int32(le.Uint32(buf[o.taskTGID:])),
		Comm:    string(comm),
		Stack:   le.Uint64(buf[o.taskStack:]),
		MM:      le.Uint64(buf[o.taskMM:]),
		SP:      le.Uint64(buf[o.taskSP:]),
		CPU:     int(le.Uint32(buf[o.taskCPU:])),
		Kthread: le.Uint32(buf[o.taskFlags:])&pfKthread != 0,
	}
	t.State = k.stateLetter(le.Uint32(buf[o.taskState:]), le.Uint32(buf[o.taskExitState:]))
	k.byAddr[addr] = t
	return t, nil
}

// pfKthread is PF_KTHREAD; it has been 0x00200000 since 2.6.27, and only
// labels tasks, so a wrong value cannot corrupt anything.
const pfKthread = 0x00200000

// stateLetter maps __state/exit_state to ps's letter the way the kernel's
// own task_state_array does: the letter is the first character of
// task_state_array[fls(state & TASK_REPORT)], read from the dump once.
func (k *Kernel) stateLetter(state, exit uint32) byte {
	const taskReport = 0x7f
	if state&0x402 == 0x402 { // TASK_IDLE = UNINTERRUPTIBLE | NOLOAD
		return 'I'
	}
	k.stateOnce.Do(k.loadStateLetters)
	return k.stateLetters[min(bits.Len32((state|exit)&taskReport), len(k.stateLetters)-1)]
}

// loadStateLetters reads the first letter of each task_state_array entry,
// keeping the usual ones where the dump cannot say.
func (k *Kernel) loadStateLetters() {
	k.stateLetters = []byte("RSDTtXZPI")
	arr, err := k.Symbol("task_state_array")
	if err != nil {
		return
	}
	for i := range k.stateLetters {
		p, err := k.ReadU64(arr + uint64(i)*8)
		var c [1]byte
		if err == nil && k.Read(c[:], p) == nil && c[0] >= 'A' && c[0] <= 'z' {
			k.stateLetters[i] = c[0]
		}
	}
}

// listNext follows list_head.next at addr.
func (k *Kernel) listNext(addr uint64) (uint64, error) { return k.ReadU64(addr) }

func (k *Kernel) loadTasks() error {
	o := &k.off
	initTask, err := k.Symbol("init_task")
	if err != nil {
		return err
	}
	seen := map[uint64]bool{}
	var all []*Task
	add := func(t *Task) {
		if !seen[t.Addr] {
			seen[t.Addr] = true
			all = append(all, t)
		}
	}
	// Thread-group leaders on init_task.tasks, then each group's threads
	// on signal->thread_head.
	head := initTask + o.taskTasks
	leaders := 0
	cut := false
	for p, err := k.listNext(head); ; p, err = k.listNext(p) {
		if err != nil {
			k.warn("task list: %v (the list is cut there)", err)
			cut = true
			break
		}
		if p == head {
			break
		}
		if leaders++; leaders > MaxTasks {
			k.warn("task list: more than %d entries, a cycle? stopped", MaxTasks)
			cut = true
			break
		}
		leader, err := k.readTask(p - o.taskTasks)
		if err != nil {
			k.warn("the task list is cut after %d tasks: %v", len(all), err)
			cut = true
			break
		}
		if seen[leader.Addr] {
			k.warn("task list: 0x%x seen twice (a cycle), stopped", leader.Addr)
			cut = true
			break
		}
		add(leader)
		k.walkThreads(leader, add)
	}
	// A list cut by a page the dump lacks: the list is doubly linked, so
	// walk it backwards from the head to the cut; then look up every pid.
	if cut {
		before := len(all)
		k.walkTasksBackwards(head, seen, add)
		back := len(all) - before
		if _, err := k.tasksFromPIDs(add); err != nil {
			k.warn("%v", err)
		}
		k.warn("%d more tasks found walking the task list backwards, %d through the pid IDR", back, len(all)-before-back)
	}
	// The idle task of every CPU (only CPU 0's is init_task, on no list)
	// and what each CPU runs.
	for _, c := range k.CPUs {
		var idle, curr uint64
		var rqErr error
		if rq, err := k.PerCPU("runqueues", c.ID); err != nil {
			rqErr = err
		} else {
			var err1, err2 error
			idle, err1 = k.ReadU64(rq + o.rqIdle)
			curr, err2 = k.ReadU64(rq + o.rqCurr)
			if rqErr = errors.Join(err1, err2); rqErr != nil {
				k.warn("CPU %d run queue: %v", c.ID, rqErr)
				idle, curr = 0, 0
			}
		}
		if idle != 0 {
			if t, err := k.readTask(idle); err == nil {
				t.IsIdle = true
				t.CPU = c.ID
				c.Idle = t
				add(t)
			} else {
				k.warn("CPU %d idle task: %v", c.ID, err)
			}
		}
		var t *Task
		var why error
		if curr != 0 {
			t, why = k.readTask(curr)
		} else {
			why = fmt.Errorf("CPU %d's current task is unknown: %w", c.ID, rqErr)
		}
		if why != nil {
			// The dump lacks what the CPU ran (makedumpfile drops slab
			// pages it does not recognise); the CPU's own note still
			// has its pid and registers, and its stack is dumped.
			if t = k.runningTaskFromNote(c, curr, why); t == nil {
				k.warn("CPU %d: %v, and the CPU saved no registers", c.ID, why)
				continue
			}
			k.warn("CPU %d ran pid %d: %v; it is shown from the CPU's saved pid and registers", c.ID, t.PID, why)
		}
		c.Curr = t
		t.OnCPU = c
		t.State = 'R'
		if t.Addr == 0 {
			all = append(all, t) // no address to know it by
		} else {
			add(t)
		}
	}
	if k.PanicCPU >= 0 && k.CPUs[k.PanicCPU].Curr != nil {
		k.CPUs[k.PanicCPU].Curr.Panic = true
	}
	// Order: running tasks in CPU order, then the rest by pid (idle last).
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if (a.OnCPU != nil) != (b.OnCPU != nil) {
			return a.OnCPU != nil
		}
		if a.OnCPU != nil {
			return a.OnCPU.ID < b.OnCPU.ID
		}
		if a.IsIdle != b.IsIdle {
			return !a.IsIdle
		}
		if a.IsIdle {
			return a.CPU < b.CPU
		}
		return a.PID < b.PID
	})
	k.Tasks = all
	return nil
}

// runningTaskFromNote stands in for the task a CPU ran when its
// task_struct cannot be read: pid and registers from the CPU's note, the
// command from the kernel's own "CPU: n PID: p Comm: c" log line when
// there is one (the panic and Oops reports print it). Nothing else about
// it is known. It returns nil when the CPU saved no registers.
func (k *Kernel) runningTaskFromNote(c *CPU, addr uint64, why error) *Task {
	if c.Regs == nil {
		return nil
	}
	t := noteTask(c, addr, why.Error())
	if c.HasNotePID {
		if comm, line := k.commFromLog(c.ID, c.NotePID); comm != "" {
			t.Comm, t.CommSource = comm, "log: "+line
		}
	}
	if addr != 0 {
		k.byAddr[addr] = t
	}
	return t
}

// noteTask is what CPU c ran, known only from the CPU's note: its pid
// when the note has one (a hypervisor's notes carry none), running,
// everything else unknown for the reason why.
func noteTask(c *CPU, addr uint64, why string) *Task {
	t := &Task{Addr: addr, PID: -1, TGID: -1, CPU: c.ID, State: 'R', Unreadable: why}
	if c.HasNotePID {
		t.PID = c.NotePID
		t.IsIdle = c.NotePID == 0
	}
	return t
}

// logTaskLine matches the header the kernel prints with every oops,
// panic and warning (dump_stack_print_info): "CPU: 1 PID: 42 Comm: sh
// Not tainted ...", since 6.10 with "UID: 0" before PID, and "Kdump:
// loaded" before the taint when a crash kernel is loaded.
var logTaskLine = regexp.MustCompile(`CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (.+?) (?:Kdump: loaded )?(?:Not tainted|Tainted:)`)

// commFromLog returns the command the log's last such line names for
// cpu and pid, and the line.
func (k *Kernel) commFromLog(cpu int, pid int32) (string, string) {
	recs, err := k.Log()
	if err != nil {
		return "", ""
	}
	return k.commInLog(recs, cpu, pid)
}

// commInLog is commFromLog on records already read.
func (k *Kernel) commInLog(recs []LogRecord, cpu int, pid int32) (string, string) {
	for i := len(recs) - 1; i >= 0; i-- {
		m := logTaskLine.FindStringSubmatch(recs[i].Text)
		// The kernel prints at most TASK_COMM_LEN-1 bytes of comm.
		if m != nil && m[1] == strconv.Itoa(cpu) && m[2] == strconv.Itoa(int(pid)) && (k.off.commLen == 0 || uint64(len(m[3])) < k.off.commLen) {
			return m[3], strings.TrimSpace(recs[i].Text)
		}
	}
	return "", ""
}

// walkTasksBackwards follows tasks.prev from the list head until it meets
// a task already found or one it cannot read.
func (k *Kernel) walkTasksBackwards(head uint64, seen map[uint64]bool, add func(*Task)) {
	o := &k.off
	prevOff, err := k.Types.Offset("list_head", "prev")
	if err != nil {
		return
	}
	for n, p := 0, head; n < MaxTasks; n++ {
		prev, err := k.ReadU64(p + prevOff)
		if err != nil || prev == head {
			return
		}
		t, err := k.readTask(prev - o.taskTasks)
		if err != nil || seen[t.Addr] {
			return
		}
		add(t)
		k.walkThreads(t, add)
		p = prev
	}
}

func (k *Kernel) walkThreads(leader *Task, add func(*Task)) {
	o := &k.off
	sig, err := k.ReadU64(leader.Addr + o.taskSignal)
	if err != nil || sig == 0 {
		return
	}
	head := sig + o.signalThreadHead
	n := 0
	for p, err := k.listNext(head); p != head; p, err = k.listNext(p) {
		if err != nil {
			k.warn("threads of pid %d: %v", leader.PID, err)
			return
		}
		if n++; n > MaxTasks {
			k.warn("threads of pid %d: more than %d, a cycle? stopped", leader.PID, MaxTasks)
			return
		}
		t, err := k.readTask(p - o.taskThreadNode)
		if err != nil {
			k.warn("%v", err)
			return
		}
		add(t)
	}
}

// TaskByAddr returns the task at a task_struct address.
func (k *Kernel) TaskByAddr(addr uint64) *Task { return k.byAddr[addr] }

// SameBanner says whether v's linux_banner is the one in the dump's memory
// at the same place (linux_banner + KERNELOFFSET): how a vmlinux is told to
// be the dump's kernel when the dump publishes no build id (kernels
// before 5.9 and the enterprise kernels based on them).
func SameBanner(d *vmcore.Dump, v *symbols.Vmlinux) (bool, error) {
	info, err := d.VMCOREINFO()
	if err != nil {
		return false, err
	}
	want, err := v.Banner()
	if err != nil {
		return false, err
	}
	addr, err := v.Address("linux_banner", info.KernelOffset)
	if err != nil {
		return false, err
	}
	vm, err := d.Kernel()
	if err != nil {
		return false, err
	}
	got := make([]byte, len(want))
	if _, err := vm.Read(got, addr); err != nil {
		return false, fmt.Errorf("linux_banner at %#x: %w", addr, err)
	}
	return string(got) == want, nil
}
