// Package elfwrite writes small ELF64 little-endian x86_64 ET_EXEC objects
// that carry sections and a symbol table but no program contents: no
// program headers, allocated sections usually SHT_NOBITS (an address range
// with nothing in the file), and non-allocated data sections such as
// DWARF. vmcore-gdbserver offers such an object to a debugger as the
// "executable" of a dump for which no vmlinux is at hand: symbols from the
// kernel's kallsyms, types from its BTF.
//
// Output is deterministic (the same input gives the same bytes) and
// bounded (MaxSize).
package elfwrite
