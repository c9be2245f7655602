package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/triage"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// FleetSchema names the layout of one `analyze --json` record of the
// many-dumps path; it changes only when a field changes meaning or goes.
const FleetSchema = "vmcore-gdbserver/analyze/1"

// fleetRecord is one line of `analyze --json DIR-or-FILES...`: the dump,
// the vmlinux used ("" when the dump's own kallsyms and BTF were), and
// either the analysis (its fields inline) or the error that stopped it.
type fleetRecord struct {
	Schema  string `json:"schema"`
	Dump    string `json:"dump"`
	Vmlinux string `json:"vmlinux"`
	Error   string `json:"error,omitempty"`
	*triage.Analysis
}

// Bounds of the many-dumps path.
const (
	maxFleetDepth = 8       // directory levels searched for dumps
	maxFleetFiles = 1 << 20 // dumps in one run
)

// isFleet says whether analyze's operands are many dumps rather than one
// (possibly split) dump: a directory among them, or several files that
// do not open together as one split kdump.
func isFleet(dumps []string) bool {
	for _, p := range dumps {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return true
		}
	}
	if len(dumps) < 2 {
		return false
	}
	d, err := vmcore.Open(dumps...)
	if err != nil {
		return true
	}
	d.Close()
	return false
}

// looksLikeDump reads a file's first bytes: an ELF core file, a
// compressed kdump (KDUMP/DISKDUMP) or makedumpfile's flattened format.
func looksLikeDump(path string) bool {
	f, _, err := rofile.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var h [18]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return false
	}
	switch {
	case string(h[:4]) == "\x7fELF":
		return binary.LittleEndian.Uint16(h[16:]) == 4 // ET_CORE
	case string(h[:8]) == "KDUMP   ", string(h[:8]) == "DISKDUMP":
		return true
	case bytes.HasPrefix(h[:], []byte("makedumpfile")):
		return true
	}
	return false
}

// fleetDumps expands the operands: a file is taken as named (a bad one
// gets its error record), a directory is searched, without following
// links to directories, for files that look like dumps; sorted, so the
// output is in the same order every run.
func fleetDumps(operands []string) ([]string, error) {
	var out []string
	for _, op := range operands {
		st, err := os.Stat(op)
		if err != nil || !st.IsDir() {
			out = append(out, op)
			continue
		}
		var found []string
		err = filepath.WalkDir(op, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil // an unreadable directory: skipped, the rest searched
			}
			if e.IsDir() {
				if rel, _ := filepath.Rel(op, p); rel != "." && depth(rel) > maxFleetDepth {
					return filepath.SkipDir
				}
				return nil
			}
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && looksLikeDump(p) {
				found = append(found, p)
			}
			if len(out)+len(found) > maxFleetFiles {
				return fmt.Errorf("%s: more than %d dumps", op, maxFleetFiles)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

func depth(rel string) int {
	n := 1
	for _, c := range rel {
		if c == filepath.Separator {
			n++
		}
	}
	return n
}

// analyzeFleet analyzes each dump on its own, jobs at a time, and writes
// one JSON record a line in the operands' order. A given vmlinux is used
// for the dumps it belongs to; the others find theirs by build id, or use
// their own kallsyms and BTF. A dump that cannot be read gets a record
// with its error and the run goes on; memory stays bounded by the jobs in
// flight (each dump's model is dropped when its record is written).
func analyzeFleet(vmlinux string, operands []string, jobs int, out io.Writer, diag io.Writer) error {
	dumps, err := fleetDumps(operands)
	if err != nil {
		return err
	}
	if jobs <= 0 {
		jobs = min(runtime.GOMAXPROCS(0), 4)
	}
	results := make([]chan []byte, len(dumps))
	for i := range results {
		results[i] = make(chan []byte, 1)
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < jobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] <- analyzeOne(vmlinux, dumps[i], diag)
			}
		}()
	}
	go func() {
		for i := range dumps {
			work <- i
		}
		close(work)
	}()
	failed := 0
	for i := range dumps {
		line := <-results[i]
		if bytes.Contains(line, []byte(`"error":`)) {
			failed++
		}
		if _, err := out.Write(line); err != nil {
			return err
		}
	}
	wg.Wait()
	if failed == len(dumps) && len(dumps) > 0 {
		return fmt.Errorf("analyze: none of the %d dumps could be analyzed", len(dumps))
	}
	return nil
}

// analyzeOne is one dump's record, never a panic: a damaged dump that
// trips a bug in a reader gets an error record like any other.
func analyzeOne(vmlinux, dump string, diag io.Writer) (line []byte) {
	rec := fleetRecord{Schema: FleetSchema, Dump: dump}
	defer func() {
		if r := recover(); r != nil {
			rec.Analysis, rec.Error = nil, fmt.Sprintf("%s: internal error: %v", dump, r)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			b, _ = json.Marshal(fleetRecord{Schema: FleetSchema, Dump: dump, Error: err.Error()})
		}
		line = append(b, '\n')
	}()
	k, used, closeAll, err := openKernel(vmlinux, []string{dump}, diag)
	if err != nil && vmlinux != "" {
		// Not this dump's vmlinux: find its own.
		k, used, closeAll, err = openKernel("", []string{dump}, diag)
	}
	if err != nil {
		rec.Error = err.Error()
		return
	}
	defer closeAll()
	rec.Vmlinux = used
	t := &triage.Triage{K: k, Vmlinux: used, Dumps: []string{dump}, Diag: io.Discard}
	a, err := t.Analyze()
	if err != nil {
		rec.Error = fmt.Sprintf("%s: %v", dump, err)
		return
	}
	rec.Analysis = a
	return
}
