// Package triage answers crash-style questions about a dump (sys, ps, bt,
// log, kmem, mod) as text or JSON. The same code serves gdb's `monitor`
// commands and the command-line subcommands.
package triage
