package kernel

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
)

// kernelMem adapts kernel reads for the unwinder.
type kernelMem struct{ k *Kernel }

func (m kernelMem) ReadU64(addr uint64) (uint64, error) { return m.k.ReadU64(addr) }

// Unwinder returns the stack unwinder for this kernel: the vmlinux's ORC
// tables (the loaded modules' are added by LoadModules) and the pt_regs
// layout from BTF.
func (k *Kernel) Unwinder() (*unwind.Unwinder, error) {
	k.unwOnce.Do(func() { k.unw, k.unwErr = k.buildUnwinder() })
	return k.unw, k.unwErr
}

func (k *Kernel) buildUnwinder() (*unwind.Unwinder, error) {
	u := &unwind.Unwinder{Mem: kernelMem{k}, PtRegs: unwind.PtRegs{}}
	for reg, member := range map[unwind.Reg]string{
		unwind.R15: "r15", unwind.R14: "r14", unwind.R13: "r13", unwind.R12: "r12", unwind.RBP: "bp",
		unwind.RBX: "bx", unwind.R11: "r11", unwind.R10: "r10", unwind.R9: "r9", unwind.R8: "r8",
		unwind.RAX: "ax", unwind.RCX: "cx", unwind.RDX: "dx", unwind.RSI: "si", unwind.RDI: "di",
		unwind.RIP: "ip", unwind.CS: "cs", unwind.EFLAGS: "flags", unwind.RSP: "sp", unwind.SS: "ss",
	} {
		off, err := k.BTF.Offset("pt_regs", member)
		if err != nil {
			return nil, err
		}
		u.PtRegs[reg] = off
	}
	// DWARF CFI covers what ORC leaves undefined (inline asm in
	// crash_setup_regs, for one); a vmlinux without .debug_frame just
	// goes without.
	if data, _, err := k.Vmlinux.SectionData(".debug_frame"); err == nil {
		if c, err := unwind.ParseCFI(data, k.KASLR); err == nil {
			u.CFI = c
		} else {
			k.warn("vmlinux %v", err)
		}
	}
	t, err := k.vmlinuxORC()
	if err != nil {
		k.warn("no ORC data for vmlinux (%v): backtraces follow frame pointers only", err)
	} else {
		u.Tables = append(u.Tables, *t)
		if mods, err := k.Modules(); err == nil {
			k.addModuleORC(u, mods)
		}
	}
	return u, nil
}

func (k *Kernel) vmlinuxORC() (*unwind.TableRange, error) {
	v := k.Vmlinux
	ipData, ipAddr, err := v.SectionData(".orc_unwind_ip")
	if err != nil {
		return nil, err
	}
	unwData, _, err := v.SectionData(".orc_unwind")
	if err != nil {
		return nil, err
	}
	header, _, _ := v.SectionData(".orc_header")
	ver, err := unwind.ORCVersionOf(header, k.Info.OSRelease)
	if err != nil {
		return nil, err
	}
	t, err := unwind.ParseORC("vmlinux", ver, ipData, ipAddr+k.KASLR, unwData)
	if err != nil {
		return nil, err
	}
	lo, hi := t.Range()
	if etext, err := k.Symbol("_etext"); err == nil && etext > hi {
		hi = etext
	}
	return &unwind.TableRange{Table: t, Start: lo, End: hi + 1}, nil
}

// UnwindRegs converts a task's registers for the unwinder.
func UnwindRegs(r Registers) unwind.Regs {
	var u unwind.Regs
	for from, to := range map[Reg]unwind.Reg{RAX: unwind.RAX, RBX: unwind.RBX, RCX: unwind.RCX, RDX: unwind.RDX,
		RSI: unwind.RSI, RDI: unwind.RDI, RBP: unwind.RBP, RSP: unwind.RSP, R8: unwind.R8, R9: unwind.R9,
		R10: unwind.R10, R11: unwind.R11, R12: unwind.R12, R13: unwind.R13, R14: unwind.R14, R15: unwind.R15,
		RIP: unwind.RIP, EFLAGS: unwind.EFLAGS, CS: unwind.CS, SS: unwind.SS} {
		if r.Known[from] {
			u.Set(to, r.Value[from])
		}
	}
	return u
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
	return u.Unwind(UnwindRegs(r), t.OnCPU != nil)
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
	if name, off, ok := k.Vmlinux.SymbolAt(addr - k.KASLR); ok {
		return fmt.Sprintf("%s+0x%x", name, off)
	}
	if m := k.moduleSymbol(addr); m != "" {
		return m
	}
	return ""
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
