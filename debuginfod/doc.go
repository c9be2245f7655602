// Package debuginfod fetches debug files by build id from the servers a
// user names in DEBUGINFOD_URLS (the protocol of elfutils' debuginfod:
// GET /buildid/<hex>/debuginfo or /executable), into a private cache under
// the user's cache directory.
//
// Every file is checked before it is used: its size is bounded (the
// server's Content-Length and the bytes actually received), it must be an
// ELF file, and its own build id note must be the one asked for, so a
// wrong or truncated answer is an error, never a kernel image that does
// not belong to the dump. Files land in the cache by rename from a
// temporary file in the same private directory; a concurrent fetch of the
// same id never sees a partial file.
package debuginfod
