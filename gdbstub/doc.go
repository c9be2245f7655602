// Package gdbstub speaks the GDB Remote Serial Protocol for a target that
// is always stopped and read-only, such as a crash dump.
//
// A Target provides threads, registers and memory. Optional features are
// small interfaces discovered by type assertion (TargetDescriber,
// ThreadDescriber, ExecFiler, SectionOffsetter, MonitorCommander,
// Librarian, FileSystem); qSupported advertises exactly what the target
// implements. A FileSystem answers gdb's vFile packets read-only; which
// names open is the target's decision alone.
// Every client connection is a Session with its own selected thread; a
// client that sends garbage or disappears only ends its own session.
// The package knows nothing of kernels.
package gdbstub
