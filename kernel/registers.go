package kernel

import (
	"fmt"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// loadRegisters finds each CPU's registers at the crash. A kdump (its
// VMCOREINFO has CRASHTIME) is read through the kernel's own per-CPU
// crash_notes, because /proc/vmcore's note order skips CPUs that wrote
// none; a hypervisor dump's notes carry pid = cpu + 1.
func (k *Kernel) loadRegisters() {
	notes := k.Dump.PRStatus()
	qemu := len(k.Dump.QEMUCPUs()) > 0
	var layout vmcore.PRStatusLayout
	var layoutErr error
	if k.Info.HasCrashTime {
		layout, layoutErr = k.prstatusLayout()
	}
	// kdump's notes hold the inactive (user) GS base, QEMU's the CPU's
	// real one: an untrue gs_base is left unknown.
	saved := func(r amd64.Regs, gsValid bool) *amd64.Regs {
		if !gsValid {
			r.Forget(amd64.GSBase)
		}
		return &r
	}
	// Without symbols crash_notes cannot be found: the notes in CPU order.
	_, bare := k.Syms.(infoSymbols)
	crashNotes := k.Info.HasCrashTime && !bare
	for _, c := range k.CPUs {
		if crashNotes {
			regs, pid, err := k.crashNote(c.ID, layout, layoutErr)
			if err == nil {
				c.Regs, c.RegsSource = saved(regs, false), "crash_notes"
				c.NotePID, c.HasNotePID = pid, true
				continue
			}
			k.warn("CPU %d: %v", c.ID, err)
		}
		for i := range notes {
			if qemu && int(notes[i].PID) == c.ID+1 {
				c.Regs, c.RegsSource, c.GSBaseValid = saved(notes[i].Regs, true), "QEMU NT_PRSTATUS", true
			}
		}
		if c.Regs == nil && !crashNotes && c.ID < len(notes) {
			c.Regs, c.RegsSource = saved(notes[c.ID].Regs, false), "NT_PRSTATUS in CPU order"
			c.NotePID, c.HasNotePID = notes[c.ID].PID, !qemu
		}
		if c.Regs == nil {
			k.warn("CPU %d: no saved registers in the dump", c.ID)
		}
	}
}

// prstatusLayout is struct elf_prstatus as the kernel's type information
// lays it out (newer kernels nest pr_pid in struct elf_prstatus_common);
// without the struct there, the ELF core-file ABI's layout, which
// x86_64 has always had.
func (k *Kernel) prstatusLayout() (vmcore.PRStatusLayout, error) {
	const s = "elf_prstatus"
	size, err := k.Types.Sizeof(s)
	if err != nil {
		return vmcore.CorePRStatus(), nil
	}
	if size > maxPRStatusSize {
		// The size sizes a read: damaged type information must not
		// make it huge.
		return vmcore.PRStatusLayout{}, fmt.Errorf("struct %s of %d bytes, more than %d", s, size, maxPRStatusSize)
	}
	l := vmcore.PRStatusLayout{Size: size}
	if l.PIDOff, err = k.Types.Offset(s, "pr_pid"); err != nil {
		if l.PIDOff, err = k.Types.Offset(s, "common.pr_pid"); err != nil {
			return l, fmt.Errorf("struct %s has neither pr_pid nor common.pr_pid", s)
		}
	}
	if l.RegOff, err = k.Types.Offset(s, "pr_reg"); err != nil {
		return l, err
	}
	// pr_reg is decoded as a struct user_regs_struct: it must be one.
	if _, err := k.arrayLen(s, "pr_reg", amd64.UserRegsCount, amd64.UserRegsCount); err != nil {
		return l, err
	}
	if l.MinDesc() > size {
		return l, fmt.Errorf("struct %s of %d bytes cannot hold pr_pid at %d and pr_reg at %d", s, size, l.PIDOff, l.RegOff)
	}
	return l, nil
}

// maxPRStatusSize bounds struct elf_prstatus (336 bytes on x86_64).
const maxPRStatusSize = 4096

// crashNote parses the NT_PRSTATUS the crashing kernel saved for cpu in
// its crash_notes buffer (struct elf_prstatus laid out as l, unless
// lerr says that layout is unknown): its registers and pr_pid, the pid
// of the task it ran.
func (k *Kernel) crashNote(cpu int, l vmcore.PRStatusLayout, lerr error) (amd64.Regs, int32, error) {
	var none amd64.Regs
	sym, err := k.Symbol("crash_notes")
	if err != nil {
		return none, 0, err
	}
	ptr, err := k.ReadU64(sym)
	if err != nil {
		return none, 0, fmt.Errorf("crash_notes: %w", err)
	}
	off, err := k.perCPUOffset(cpu)
	if err != nil {
		return none, 0, err
	}
	if lerr != nil {
		return none, 0, fmt.Errorf("crash_notes: %w", lerr)
	}
	addr := ptr + off
	buf := make([]byte, vmcore.NoteSize(vmcore.NoteNameCore, l.Size))
	if err := k.Read(buf, addr); err != nil {
		return none, 0, fmt.Errorf("crash_notes buffer: %w", err)
	}
	where := fmt.Sprintf("crash_notes of CPU %d at 0x%x", cpu, addr)
	notes, err := vmcore.ParseNotes(where, buf, 0)
	if err != nil {
		return none, 0, err
	}
	if len(notes) == 0 || notes[0].Name != vmcore.NoteNameCore || notes[0].Type != vmcore.NT_PRSTATUS {
		return none, 0, fmt.Errorf("crash_notes holds no NT_PRSTATUS (the CPU did not save its registers)")
	}
	pid, regs, err := vmcore.DecodePRStatus(notes[0].Desc, l)
	if err != nil {
		return none, 0, fmt.Errorf("%s: %w", where, err)
	}
	return regs, pid, nil
}

// TaskRegisters returns what is known of a task's registers: a CPU's
// saved set for a running task; for a sleeping one, the callee-saved
// registers __switch_to_asm pushed at thread.sp, rip = ret_addr and
// rsp just above that frame (as if __switch_to_asm had returned).
func (k *Kernel) TaskRegisters(t *Task) (amd64.Regs, error) {
	if t.OnCPU != nil {
		c := t.OnCPU
		if c.Regs == nil {
			return amd64.Regs{}, fmt.Errorf("CPU %d saved no registers", c.ID)
		}
		return *c.Regs, nil
	}
	o := &k.off
	if !o.hasFrame || t.SP == 0 {
		return amd64.Regs{}, fmt.Errorf("pid %d: no switch frame", t.PID)
	}
	buf := make([]byte, o.frame.Size)
	if err := k.Read(buf, t.SP); err != nil {
		return amd64.Regs{}, fmt.Errorf("pid %d switch frame at 0x%x: %w", t.PID, t.SP, err)
	}
	r, err := o.frame.Decode(buf)
	if err != nil {
		return amd64.Regs{}, fmt.Errorf("pid %d switch frame at 0x%x: %w", t.PID, t.SP, err)
	}
	r.Set(amd64.RSP, t.SP+o.frame.Size)
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
