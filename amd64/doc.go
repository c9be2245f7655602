// Package amd64 is the one x86-64 register model of the project: the
// registers numbered as the x86-64 psABI numbers them for DWARF, a
// register set that says which of its values are known, and the byte
// layouts that hold registers (struct user_regs_struct, the ABI of
// NT_PRSTATUS notes; struct layouts read from a kernel's type
// information). It imports nothing of the project, so the dump reader,
// the unwinder, the kernel model and the gdb adapter share it.
package amd64
