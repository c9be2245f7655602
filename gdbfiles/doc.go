// Package gdbfiles is the file side of serving a dump to gdb: it finds the
// object files of the loaded modules in module directories (decompressing
// .ko.xz and .ko.zst into a private, size-capped cache, since gdb needs a
// file it can open) and describes them to gdb as a library list placed at
// the sections' addresses in the crashed kernel. What the kernel loaded and
// where comes from package kernel; what gdb reads and how is decided here,
// including the fence on gdb's reads through the connection (Served): the
// exact names of the files the server opened for gdb, nothing else.
package gdbfiles
