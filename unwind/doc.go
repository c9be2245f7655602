// Package unwind will recover kernel call stacks: ORC tables, DWARF CFI and
// frame pointers, crossing exception and interrupt frames.
// (Built by the kernel-awareness issue.)
package unwind
