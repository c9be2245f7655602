package kernel

import (
	"encoding/binary"
	"fmt"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// Reg numbers registers in gdb's amd64 order.
type Reg int

const (
	RAX Reg = iota
	RBX
	RCX
	RDX
	RSI
	RDI
	RBP
	RSP
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
	RIP
	EFLAGS
	CS
	SS
	DS
	ES
	FS
	GS
	OrigRAX
	FSBase
	GSBase
	NumRegs
)

var regNames = [NumRegs]string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags",
	"cs", "ss", "ds", "es", "fs", "gs", "orig_rax", "fs_base", "gs_base"}

func (r Reg) String() string {
	if r >= 0 && r < NumRegs {
		return regNames[r]
	}
	return fmt.Sprintf("Reg(%d)", int(r))
}

// Registers is a register set where only what the dump holds is Known.
type Registers struct {
	Value [NumRegs]uint64
	Known [NumRegs]bool
}

func (r *Registers) set(reg Reg, v uint64) { r.Value[reg], r.Known[reg] = v, true }

func fromPRStatus(p *vmcore.Regs, gsValid bool) Registers {
	var r Registers
	for reg, v := range map[Reg]uint64{RAX: p.RAX, RBX: p.RBX, RCX: p.RCX, RDX: p.RDX, RSI: p.RSI, RDI: p.RDI,
		RBP: p.RBP, RSP: p.RSP, R8: p.R8, R9: p.R9, R10: p.R10, R11: p.R11, R12: p.R12, R13: p.R13,
		R14: p.R14, R15: p.R15, RIP: p.RIP, EFLAGS: p.EFLAGS, CS: p.CS, SS: p.SS, DS: p.DS, ES: p.ES,
		FS: p.FS, GS: p.GS, OrigRAX: p.OrigRAX, FSBase: p.FSBase} {
		r.set(reg, v)
	}
	if gsValid {
		r.set(GSBase, p.GSBase)
	}
	return r
}

// loadRegisters finds each CPU's registers at the crash. A kdump (its
// VMCOREINFO has CRASHTIME) is read through the kernel's own per-CPU
// crash_notes, because /proc/vmcore's note order skips CPUs that wrote
// none; a hypervisor dump's notes carry pid = cpu + 1.
func (k *Kernel) loadRegisters() {
	notes := k.Dump.PRStatus()
	qemu := len(k.Dump.QEMUCPUs()) > 0
	for _, c := range k.CPUs {
		if k.Info.HasCrashTime {
			if regs, pid, err := k.crashNote(c.ID); err == nil {
				c.Regs, c.RegsSource = regs, "crash_notes"
				c.NotePID, c.HasNotePID = pid, true
				continue
			} else {
				k.warn("CPU %d: %v", c.ID, err)
			}
		}
		for i := range notes {
			if qemu && int(notes[i].PID) == c.ID+1 {
				c.Regs, c.RegsSource, c.GSBaseValid = &notes[i].Regs, "QEMU NT_PRSTATUS", true
			}
		}
		if c.Regs == nil && !k.Info.HasCrashTime && c.ID < len(notes) {
			c.Regs, c.RegsSource = &notes[c.ID].Regs, "NT_PRSTATUS in CPU order"
			c.NotePID, c.HasNotePID = notes[c.ID].PID, !qemu
		}
		if c.Regs == nil {
			k.warn("CPU %d: no saved registers in the dump", c.ID)
		}
	}
}

// crashNote parses the NT_PRSTATUS the crashing kernel saved for cpu:
// its registers and pr_pid, the pid of the task it ran.
func (k *Kernel) crashNote(cpu int) (*vmcore.Regs, int32, error) {
	sym, err := k.Symbol("crash_notes")
	if err != nil {
		return nil, 0, err
	}
	ptr, err := k.ReadU64(sym)
	if err != nil {
		return nil, 0, fmt.Errorf("crash_notes: %w", err)
	}
	off, err := k.perCPUOffset(cpu)
	if err != nil {
		return nil, 0, err
	}
	buf := make([]byte, 12+8+336)
	if err := k.Read(buf, ptr+off); err != nil {
		return nil, 0, fmt.Errorf("crash_notes buffer: %w", err)
	}
	le := binary.LittleEndian
	namesz, descsz, typ := le.Uint32(buf), le.Uint32(buf[4:]), le.Uint32(buf[8:])
	if namesz != 5 || typ != vmcore.NT_PRSTATUS || descsz < 112+27*8 || string(buf[12:16]) != "CORE" {
		return nil, 0, fmt.Errorf("crash_notes holds no NT_PRSTATUS (the CPU did not save its registers)")
	}
	desc := buf[20:]
	pid := int32(le.Uint32(desc[32:])) // pr_pid, after pr_info, pr_cursig, pr_sigpend, pr_sighold
	var v [27]uint64
	for i := range v {
		v[i] = le.Uint64(desc[112+8*i:])
	}
	return &vmcore.Regs{R15: v[0], R14: v[1], R13: v[2], R12: v[3], RBP: v[4], RBX: v[5], R11: v[6], R10: v[7],
		R9: v[8], R8: v[9], RAX: v[10], RCX: v[11], RDX: v[12], RSI: v[13], RDI: v[14], OrigRAX: v[15],
		RIP: v[16], CS: v[17], EFLAGS: v[18], RSP: v[19], SS: v[20], FSBase: v[21], GSBase: v[22],
		DS: v[23], ES: v[24], FS: v[25], GS: v[26]}, pid, nil
}

// TaskRegisters returns what is known of a task's registers: a CPU's
// saved set for a running task; for a sleeping one, the callee-saved
// registers __switch_to_asm pushed at thread.sp, rip = ret_addr and
// rsp just above that frame (as if __switch_to_asm had returned).
func (k *Kernel) TaskRegisters(t *Task) (Registers, error) {
	if t.OnCPU != nil {
		c := t.OnCPU
		if c.Regs == nil {
			return Registers{}, fmt.Errorf("CPU %d saved no registers", c.ID)
		}
		return fromPRStatus(c.Regs, c.GSBaseValid), nil
	}
	o := &k.off
	if !o.hasFrame || t.SP == 0 {
		return Registers{}, fmt.Errorf("pid %d: no switch frame", t.PID)
	}
	buf := make([]byte, o.frameSize)
	if err := k.Read(buf, t.SP); err != nil {
		return Registers{}, fmt.Errorf("pid %d switch frame at 0x%x: %w", t.PID, t.SP, err)
	}
	var r Registers
	le := binary.LittleEndian
	for name, reg := range map[string]Reg{"r15": R15, "r14": R14, "r13": R13, "r12": R12, "bx": RBX, "bp": RBP, "ret_addr": RIP} {
		if off, ok := o.frame[name]; ok {
			r.set(reg, le.Uint64(buf[off:]))
		}
	}
	r.set(RSP, t.SP+o.frameSize)
	return r, nil
}

// ReadMemory reads in a task's view: kernel addresses through the kernel
// page tables, user addresses through the task's mm->pgd.
func (k *Kernel) ReadMemory(t *Task, addr uint64, p []byte) (int, error) {
	if addr >= k.userLimit() || t == nil {
		return k.VM.Read(p, addr)
	}
	if t.Unreadable != "" {
		return 0, fmt.Errorf("address 0x%x: pid %d's user memory is unknown: %s", addr, t.PID, t.Unreadable)
	}
	if t.MM == 0 {
		return 0, fmt.Errorf("address 0x%x: pid %d is a kernel thread without user memory", addr, t.PID)
	}
	k.mu.Lock()
	as, ok := k.userAS[t.MM]
	k.mu.Unlock()
	if !ok {
		pgd, err := k.ReadU64(t.MM + k.off.mmPGD)
		if err != nil {
			return 0, fmt.Errorf("pid %d mm->pgd: %w", t.PID, err)
		}
		as, err = k.VM.UserSpace(pgd)
		if err != nil {
			return 0, err
		}
		k.mu.Lock()
		k.userAS[t.MM] = as
		k.mu.Unlock()
	}
	return as.Read(p, addr)
}

// userLimit is the end of the user half of the address space.
func (k *Kernel) userLimit() uint64 {
	if k.VM.Levels() == 5 {
		return 1 << 56
	}
	return 1 << 47
}
