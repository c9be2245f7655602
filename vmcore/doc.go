// Package vmcore opens Linux x86_64 crash dumps and turns them into
// physical memory, VMCOREINFO and per-CPU register notes, and translates
// kernel (and task) virtual addresses through the dumped page tables.
//
// Formats are recognised by content, never by file name:
//   - ELF vmcores: /proc/vmcore as the kdump kernel exports it, makedumpfile -E
//     output, and QEMU's dump-guest-memory ELF;
//   - makedumpfile's compressed kdump format ("KDUMP   ", header versions 1-6)
//     with raw, zlib, lzo, snappy or zstd pages, including --split sets;
//   - makedumpfile's flattened stream (-F, and QEMU's kdump-* before 8.2),
//     read in place through an index of its records.
//
// Files are mapped read-only. Opening costs at most one pass over the
// kdump bitmap (a prefix popcount table), never a pass over RAM; pages are
// decompressed when read and kept in a small LRU.
//
// Every read failure is a typed error carrying the address: a page
// makedumpfile filtered out wraps ErrExcluded, an address the dump does not
// cover wraps ErrNotPresent, a page that cannot be decoded wraps ErrCorrupt,
// and a page lost because the dump was cut short wraps ErrIncomplete.
// This package knows nothing about gdb.
package vmcore
