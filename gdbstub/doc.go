// Package gdbstub will speak the GDB Remote Serial Protocol for a halted,
// read-only target: packet framing, a small Target interface and optional
// extensions discovered by type assertion. It knows nothing of kernels.
// (Built by the issue that serves dumps to gdb.)
package gdbstub
