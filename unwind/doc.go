// Package unwind recovers x86_64 kernel call stacks from a register set
// and memory: ORC tables (every layout the kernel has used), frame
// pointers where ORC has no entry, and the exception and interrupt frames
// (struct pt_regs) the entry code leaves on the stack. It stops at the
// user-space boundary. It knows nothing of dump files or gdb; callers
// provide memory reads and the pt_regs layout (from BTF).
package unwind
