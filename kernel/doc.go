// Package kernel models the crashed kernel from a dump and its vmlinux:
// CPUs, the task on each, every task with its registers, and task
// address spaces. Struct layouts come from BTF and addresses from the
// symbol table shifted by VMCOREINFO's KERNELOFFSET; nothing about a
// particular kernel version is hard-coded.
package kernel
