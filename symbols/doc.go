// Package symbols reads what a kernel build knows about itself: the
// vmlinux ELF symbol table (link-time addresses, shifted by the dump's
// KERNELOFFSET for KASLR) and struct layouts from the kernel's BTF, so
// no struct offset or kernel address is ever hard-coded.
package symbols
