package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
)

// kernelMem adapts kernel reads for the unwinder.
type kernelMem struct{ k *Kernel }

func (m kernelMem) ReadU64(addr uint64) (uint64, error) { return m.k.ReadU64(addr) }

// ReadCode reads instruction bytes; an instruction window that runs into
// a page the dump lacks is cut at the page (the decoder then sees zeros).
func (m kernelMem) ReadCode(p []byte, addr uint64) error {
	if err := m.k.Read(p, addr); err == nil {
		return nil
	}
	n := min(uint64(len(p)), 4096-addr%4096)
	clear(p)
	return m.k.Read(p[:n], addr)
}

// Unwinder returns the stack unwinder for this kernel: the vmlinux's ORC
// tables (the loaded modules' are added by LoadModules) and the pt_regs
// layout from BTF.
func (k *Kernel) Unwinder() (*unwind.Unwinder, error) {
	k.unwOnce.Do(func() { k.unw, k.unwErr = k.buildUnwinder() })
	return k.unw, k.unwErr
}

func (k *Kernel) buildUnwinder() (*unwind.Unwinder, error) {
	u := &unwind.Unwinder{Mem: kernelMem{k}}
	u.FunctionStart = func(pc uint64) bool {
		name, off, ok := k.Syms.Lookup(pc)
		return ok && off == 0 && name != ""
	}
	u.IsText = k.isText
	u.Code = kernelMem{k}
	var err error
	if u.PtRegs, err = k.ptRegsLayout(); err != nil {
		return nil, err
	}
	// DWARF CFI covers what ORC leaves undefined (inline asm in
	// crash_setup_regs, for one); a vmlinux without .debug_frame just
	// goes without.
	if k.Vmlinux != nil {
		if data, _, err := k.Vmlinux.SectionData(".debug_frame"); err == nil {
			if c, err := unwind.ParseCFI(data, k.KASLR); err == nil {
				u.CFI = c
			} else {
				k.warn("vmlinux %v", err)
			}
		}
	}
	t, err := k.vmlinuxORC()
	if err != nil && !k.builtWithORC() {
		// CONFIG_UNWINDER_FRAME_POINTER (or a kernel older than ORC):
		// the kernel unwinds itself by rbp, and so do we.
		u.FramePointers = true
	} else if err != nil {
		k.warn("no ORC data for vmlinux (%v): backtraces follow frame pointers only", err)
	} else {
		u.Tables = append(u.Tables, *t)
		if mods, err := k.Modules(); err == nil {
			k.addModuleORC(u, mods)
		}
	}
	return u, nil
}

// builtWithORC says whether the kernel has ORC tables at all, readable
// or not: a vmlinux section or the symbols that bound them in memory.
func (k *Kernel) builtWithORC() bool {
	if k.Vmlinux != nil {
		if _, _, err := k.Vmlinux.SectionData(".orc_unwind_ip"); err == nil {
			return true
		}
	}
	_, err := k.Symbol("__start_orc_unwind_ip")
	return err == nil
}

// isText says whether addr is in the kernel's text (init text too: the
// boot CPU's idle task returns into start_kernel) or in a module.
func (k *Kernel) isText(addr uint64) bool {
	for _, r := range [][2]string{{"_stext", "_etext"}, {"_sinittext", "_einittext"}} {
		lo, err1 := k.Symbol(r[0])
		hi, err2 := k.Symbol(r[1])
		if err1 == nil && err2 == nil && addr >= lo && addr < hi {
			return true
		}
	}
	return k.inModules(addr)
}

// orcHeader returns the kernel's .orc_header bytes (absent before 6.3).
func (k *Kernel) orcHeader() []byte {
	if k.Vmlinux != nil {
		h, _, _ := k.Vmlinux.SectionData(".orc_header")
		return h
	}
	start, err1 := k.Symbol("__start_orc_header")
	stop, err2 := k.Symbol("__stop_orc_header")
	if err1 != nil || err2 != nil || stop <= start || stop-start > 64 {
		return nil
	}
	h := make([]byte, stop-start)
	if k.Read(h, start) != nil {
		return nil
	}
	return h
}

// vmlinuxORC reads the kernel's ORC tables from the vmlinux sections, or
// from the dumped memory between __start_orc_unwind_ip and its stop.
func (k *Kernel) vmlinuxORC() (*unwind.TableRange, error) {
	var ipData, unwData []byte
	var ipAddr uint64
	if v := k.Vmlinux; v != nil {
		var err error
		var linkAddr uint64
		if ipData, linkAddr, err = v.SectionData(".orc_unwind_ip"); err != nil {
			return nil, err
		}
		if unwData, _, err = v.SectionData(".orc_unwind"); err != nil {
			return nil, err
		}
		ipAddr = linkAddr + k.KASLR
	} else {
		start, err1 := k.Symbol("__start_orc_unwind_ip")
		stop, err2 := k.Symbol("__stop_orc_unwind_ip")
		ustart, err3 := k.Symbol("__start_orc_unwind")
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, err
		}
		n := (stop - start) / 4
		if stop < start || n > 1<<24 {
			return nil, fmt.Errorf("ORC table of %d entries", n)
		}
		ipData, unwData = make([]byte, 4*n), make([]byte, 6*n)
		if err := errors.Join(k.Read(ipData, start), k.Read(unwData, ustart)); err != nil {
			return nil, err
		}
		ipAddr = start
	}
	ver, err := unwind.ORCVersionOf(k.orcHeader(), k.Info.OSRelease)
	if err != nil {
		return nil, err
	}
	t, err := unwind.ParseORC("vmlinux", ver, ipData, ipAddr, unwData)
	if err != nil {
		return nil, err
	}
	lo, hi := t.Range()
	if etext, err := k.Symbol("_etext"); err == nil && etext > hi {
		hi = etext
	}
	return &unwind.TableRange{Table: t, Start: lo, End: hi + 1}, nil
}

// ptRegsMembers are the registers struct pt_regs saves, by member name
// (orig_ax is no register the unwinder tracks).
var ptRegsMembers = []struct {
	reg    amd64.Reg
	member string
}{
	{amd64.R15, "r15"}, {amd64.R14, "r14"}, {amd64.R13, "r13"}, {amd64.R12, "r12"}, {amd64.RBP, "bp"},
	{amd64.RBX, "bx"}, {amd64.R11, "r11"}, {amd64.R10, "r10"}, {amd64.R9, "r9"}, {amd64.R8, "r8"},
	{amd64.RAX, "ax"}, {amd64.RCX, "cx"}, {amd64.RDX, "dx"}, {amd64.RSI, "si"}, {amd64.RDI, "di"},
	{amd64.RIP, "ip"}, {amd64.CS, "cs"}, {amd64.EFLAGS, "flags"}, {amd64.RSP, "sp"}, {amd64.SS, "ss"},
}

// ptRegsLayout is struct pt_regs from the type information.
func (k *Kernel) ptRegsLayout() (amd64.Layout, error) {
	l := amd64.Layout{Name: "pt_regs"}
	for _, m := range ptRegsMembers {
		off, err := k.Types.Offset("pt_regs", m.member)
		if err != nil {
			return l, err
		}
		l.Fields = append(l.Fields, amd64.Field{Reg: m.reg, Off: off})
	}
	return l, nil
}

// Backtrace unwinds a task's kernel stack with ORC. The error, if any,
// says why the walk stopped early; the frames up to there are returned.
func (k *Kernel) Backtrace(t *Task) ([]unwind.Frame, error) {
	r, err := k.TaskRegisters(t)
	if err != nil {
		return nil, err
	}
	u, err := k.Unwinder()
	if err != nil {
		return nil, err
	}
	// A CPU's saved rip is the instruction itself; a sleeping task's is a
	// return address into __schedule.
	return u.Unwind(r, t.OnCPU != nil)
}

// ReturnSymbolName names a return address by the call before it: a call
// at the very end of a noreturn function returns past that function.
func (k *Kernel) ReturnSymbolName(addr uint64) string {
	n := k.SymbolName(addr - 1)
	if i := strings.LastIndex(n, "+0x"); i >= 0 {
		var off uint64
		if _, err := fmt.Sscanf(n[i+3:], "%x", &off); err == nil {
			return fmt.Sprintf("%s+0x%x", n[:i], off+1)
		}
	}
	return n
}

// SymbolName names a run-time address as "func+0xoff", or "" if unknown.
func (k *Kernel) SymbolName(addr uint64) string {
	if name, off, ok := k.Syms.Lookup(addr); ok && !k.inModules(addr) {
		return fmt.Sprintf("%s+0x%x", name, off)
	}
	if m := k.moduleSymbol(addr); m != "" {
		return m
	}
	return ""
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// UnwindObject returns an ELF object whose .debug_frame is this kernel's
// ORC (vmlinux and modules) translated for gdb where the vmlinux's own
// CFI says nothing, plus an outermost frame for user space (see
// unwind.BuildCFIObject).
func (k *Kernel) UnwindObject() ([]byte, error) {
	u, err := k.Unwinder()
	if err != nil {
		return nil, err
	}
	if len(u.Tables) == 0 {
		return nil, fmt.Errorf("no ORC tables to translate")
	}
	return unwind.BuildCFIObject(unwind.CFIObject{
		Tables: u.Tables, Own: u.CFI, PtRegs: u.PtRegs, Extra: k.derivedCPURules(u),
		// gdb drops an FDE at address 0 as a linker leftover: start at 1.
		UserStart: 1, UserEnd: k.userLimit(),
	})
}

// derivedCPURules are the unwind rules derived from the code at each
// CPU's saved pc where ORC has none (the panicking CPU's registers are
// taken in __crash_kexec, which objtool leaves undefined): gdb then
// unwinds those frames as the model does.
func (k *Kernel) derivedCPURules(u *unwind.Unwinder) []unwind.ExtraRule {
	var out []unwind.ExtraRule
	for _, c := range k.CPUs {
		if c.Regs == nil {
			continue
		}
		pc, ok := c.Regs.Get(amd64.RIP)
		if !ok || !k.isText(pc) || u.HasRule(pc) {
			continue
		}
		if e, err := u.DerivedEntry(pc); err == nil {
			out = append(out, unwind.ExtraRule{PC: pc, Entry: e})
		}
	}
	return out
}

// ErrLinesNeedVmlinux says source lines were asked of a kernel read
// without its vmlinux: kallsyms and BTF carry no line tables.
var ErrLinesNeedVmlinux = errors.New("source lines need the vmlinux's DWARF (no vmlinux given)")

// SourceLines returns the source positions of a run-time address in the
// vmlinux's code, innermost (inlined) first.
func (k *Kernel) SourceLines(addr uint64) ([]symbols.SourceLine, error) {
	if k.Vmlinux == nil {
		return nil, ErrLinesNeedVmlinux
	}
	if k.inModules(addr) {
		return nil, fmt.Errorf("%#x is module code: lines for modules are not read yet", addr)
	}
	return k.Vmlinux.SourceLines(addr - k.KASLR)
}
