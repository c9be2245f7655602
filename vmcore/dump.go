package vmcore

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Format is the container format of a dump.
type Format int

const (
	FormatELF Format = iota + 1
	FormatKdump
	FormatKdumpFlattened
	FormatELFFlattened
)

func (f Format) String() string {
	switch f {
	case FormatELF:
		return "elf"
	case FormatKdump:
		return "kdump"
	case FormatKdumpFlattened:
		return "kdump-flattened"
	case FormatELFFlattened:
		return "elf-flattened"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Dump is an opened crash dump: one file, or the parts of a split kdump.
// It is safe for concurrent use.
type Dump struct {
	files    []string
	name     string // the file errors about the dump as a whole name
	format   Format
	pageSize uint64

	elf   *elfMemory
	parts []*kdumpFile // sorted by startPFN

	notes      *noteSet
	vmcoreinfo *VMCOREINFO
	infoErr    error

	cache   *pageCache
	bufPool sync.Pool
	closers []io.Closer
}

// Open opens one dump file, or several files that together form one split
// kdump. Files are recognised by their content.
func Open(paths ...string) (*Dump, error) {
	if len(paths) == 0 {
		return nil, errors.New("no dump file given")
	}
	var srcs []source
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	for _, p := range paths {
		m, err := openMapped(p)
		if err != nil {
			closeAll()
			return nil, err
		}
		closers = append(closers, m)
		srcs = append(srcs, m)
	}
	d, err := openSources(srcs)
	if err != nil {
		closeAll()
		return nil, err
	}
	d.files = paths
	d.closers = closers
	return d, nil
}

// OpenBytes opens a dump held in memory (tests and fuzzing).
func OpenBytes(name string, data []byte) (*Dump, error) {
	d, err := openSources([]source{&bytesSource{name: name, data: data}})
	if err != nil {
		return nil, err
	}
	d.files = []string{name}
	return d, nil
}

func openSources(srcs []source) (*Dump, error) {
	d := &Dump{}
	for _, src := range srcs {
		var head [16]byte
		n, _ := src.ReadAt(head[:], 0)
		h := head[:n]
		format := Format(0)
		if isFlattened(h) {
			f, err := openFlattened(src)
			if err != nil {
				return nil, err
			}
			src = f
			n, _ = src.ReadAt(head[:], 0)
			h = head[:n]
			switch {
			case isKdump(h):
				format = FormatKdumpFlattened
			case isELF(h):
				format = FormatELFFlattened
			default:
				return nil, formatErr(src.Name(), int64(MAX_SIZE_MDF_HEADER), "flattened stream holds neither a kdump nor an ELF file")
			}
		} else if isKdump(h) {
			format = FormatKdump
		} else if isELF(h) {
			format = FormatELF
		} else {
			return nil, formatErr(src.Name(), 0, "not a vmcore: unknown signature %q (want ELF, \"KDUMP   \" or \"makedumpfile\")", printable(h))
		}
		if d.format != 0 && d.format != format {
			return nil, fmt.Errorf("%s: %s file cannot join a split set of %s files", src.Name(), format, d.format)
		}
		d.format = format
		switch format {
		case FormatELF, FormatELFFlattened:
			if len(srcs) > 1 {
				return nil, fmt.Errorf("%s: several files were given, but this is an ELF vmcore, not a part of a split kdump", src.Name())
			}
			m, err := openELF(src)
			if err != nil {
				return nil, err
			}
			d.elf = m
			d.notes = m.notes
		default:
			k, err := openKdump(src)
			if err != nil {
				return nil, err
			}
			d.parts = append(d.parts, k)
		}
	}
	if len(d.parts) > 0 {
		if err := d.joinParts(); err != nil {
			return nil, err
		}
	}
	// VMCOREINFO and page size.
	var raw []byte
	var rawOff int64
	if d.elf != nil {
		raw, rawOff = d.notes.vmcoreinfo, d.notes.vmcoreOff
		d.name = d.elf.src.Name()
	} else {
		raw, rawOff = d.parts[0].vmcoreinfo, d.parts[0].vmcoreOff
		d.notes = d.parts[0].notes
		d.name = d.parts[0].src.Name()
	}
	if raw != nil {
		d.vmcoreinfo, d.infoErr = ParseVMCOREINFO(raw)
		var ve *VMCOREINFOError
		switch {
		case errors.As(d.infoErr, &ve):
			d.infoErr = &FormatError{File: d.name, Offset: rawOff + int64(ve.Offset), Msg: fmt.Sprintf("VMCOREINFO line %s=%q", ve.Key, ve.Value), Err: ve.Err}
		case d.infoErr != nil:
			d.infoErr = &FormatError{File: d.name, Offset: rawOff, Msg: "VMCOREINFO", Err: d.infoErr}
		}
	}
	switch {
	case d.parts != nil:
		d.pageSize = uint64(d.parts[0].pageSize)
	case d.vmcoreinfo != nil && d.vmcoreinfo.PageSize != 0:
		d.pageSize = d.vmcoreinfo.PageSize
	default:
		d.pageSize = 4096
	}
	d.cache = newPageCache(DefaultCacheBytes, int(d.pageSize))
	return d, nil
}

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}

// joinParts checks that split files belong together and orders them.
func (d *Dump) joinParts() error {
	sort.Slice(d.parts, func(i, j int) bool { return d.parts[i].startPFN < d.parts[j].startPFN })
	first := d.parts[0]
	for i, k := range d.parts {
		if len(d.parts) > 1 && k.sub.Split == 0 {
			return fmt.Errorf("%s: several files were given, but this kdump is not part of a split dump", k.src.Name())
		}
		if k.maxMapnr != first.maxMapnr || k.pageSize != first.pageSize || k.hdr.Utsname != first.hdr.Utsname {
			return fmt.Errorf("%s: does not belong to the same split dump as %s (headers differ)", k.src.Name(), first.src.Name())
		}
		if i > 0 && k.startPFN < d.parts[i-1].endPFN {
			return fmt.Errorf("%s: pfn range [0x%x, 0x%x) overlaps %s", k.src.Name(), k.startPFN, k.endPFN, d.parts[i-1].src.Name())
		}
	}
	return nil
}

// Files returns the paths the dump was opened from.
func (d *Dump) Files() []string { return d.files }

// Format returns the container format.
func (d *Dump) Format() Format { return d.format }

// PageSize returns the page size of the dumped machine.
func (d *Dump) PageSize() uint64 { return d.pageSize }

// VMCOREINFO returns the parsed VMCOREINFO, or nil and the reason.
func (d *Dump) VMCOREINFO() (*VMCOREINFO, error) {
	if d.vmcoreinfo == nil && d.infoErr == nil {
		return nil, fmt.Errorf("%s: the dump carries no VMCOREINFO (no VMCOREINFO note and, for a kdump, no offset_vmcoreinfo)", d.name)
	}
	return d.vmcoreinfo, d.infoErr
}

// Notes returns every ELF note in the dump.
func (d *Dump) Notes() []Note { return d.notes.all }

// PRStatus returns the NT_PRSTATUS notes in file order. In a kdump the
// n-th note is not necessarily CPU n (offline CPUs write none).
func (d *Dump) PRStatus() []PRStatus { return d.notes.prstatus }

// QEMUCPUs returns QEMU's per-CPU notes, in CPU order (hypervisor dumps).
func (d *Dump) QEMUCPUs() []QEMUCPUState { return d.notes.qemu }

// maxNRCPUS is the largest CONFIG_NR_CPUS x86_64 allows (MAXSMP).
const maxNRCPUS = 8192

// CPUs returns the number of CPUs the dump describes.
// A kdump header's nr_cpus above NR_CPUS's largest x86_64 value is
// damage: the notes are counted instead.
func (d *Dump) CPUs() int {
	if d.parts != nil && d.parts[0].hdr.NrCPUs > 0 && d.parts[0].hdr.NrCPUs <= maxNRCPUS {
		return int(d.parts[0].hdr.NrCPUs)
	}
	return max(len(d.notes.prstatus), len(d.notes.qemu))
}

// Incomplete reports whether the dump says or shows it was cut short.
func (d *Dump) Incomplete() bool {
	if d.elf != nil {
		if fs, ok := d.elf.src.(*flatSource); ok && fs.truncated {
			return true
		}
		return d.elf.incomplete()
	}
	for _, k := range d.parts {
		if fs, ok := k.src.(*flatSource); ok && fs.truncated {
			return true
		}
		if k.incomplete() {
			return true
		}
	}
	return false
}

// DumpLevel returns makedumpfile's dump level; ok is false for ELF dumps,
// which do not record one.
func (d *Dump) DumpLevel() (level int, ok bool) {
	if d.parts == nil {
		return 0, false
	}
	return int(d.parts[0].sub.DumpLevel), true
}

// KdumpHeader returns the kdump headers of the first part, or nil for ELF.
func (d *Dump) KdumpHeader() (*DiskDumpHeader, *KdumpSubHeader) {
	if d.parts == nil {
		return nil, nil
	}
	return &d.parts[0].hdr, &d.parts[0].sub
}

// LoadSegments returns an ELF dump's PT_LOADs in file order (nil for kdump).
func (d *Dump) LoadSegments() []LoadSegment {
	if d.elf == nil {
		return nil
	}
	return d.elf.segments
}

// PageCounts says how many pages the dump holds and how many that existed
// in memory were left out.
type PageCounts struct {
	Dumped   uint64
	Excluded uint64
}

// PageCounts counts pages. For kdump files it reads the bitmaps.
func (d *Dump) PageCounts() PageCounts {
	var pc PageCounts
	if d.elf != nil {
		// Only what the file holds: a cut-short PT_LOAD's missing
		// pages were not dumped. Sizes are below 2^52 (openELF).
		for _, g := range d.elf.phys {
			pc.Dumped += (d.elf.storedBytes(g) + d.pageSize - 1) / d.pageSize
		}
		return pc
	}
	for _, k := range d.parts {
		dumped := k.dumpedPages()
		pc.Dumped += dumped
		if ex := k.existingPages(); ex > dumped {
			pc.Excluded += ex - dumped
		}
	}
	return pc
}

// Compressions scans all page descriptors and counts pages per encoding
// (nil for ELF dumps). Its cost grows with the dump; opening does not call it.
func (d *Dump) Compressions() (map[Compression]uint64, error) {
	if d.parts == nil {
		return nil, nil
	}
	all := map[Compression]uint64{}
	for _, k := range d.parts {
		m, err := k.compressions()
		for c, n := range m {
			all[c] += n
		}
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// CacheStats returns hits and misses of the decompressed-page cache.
func (d *Dump) CacheStats() (hits, misses uint64) { return d.cache.stats() }

// Close unmaps the files.
func (d *Dump) Close() error {
	var first error
	for _, c := range d.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	d.closers = nil
	return first
}

func (d *Dump) pageBuf() []byte {
	if b, ok := d.bufPool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, d.pageSize)
}

func (d *Dump) putPageBuf(b []byte) { d.bufPool.Put(&b) }

// ReadPhys reads len(p) bytes of physical memory at addr. It returns how
// many bytes were read before the first failure; the error is a
// *PhysError wrapping ErrExcluded, ErrNotPresent, ErrCorrupt or
// ErrIncomplete.
func (d *Dump) ReadPhys(p []byte, addr uint64) (int, error) {
	done := 0
	for done < len(p) {
		pageOff := addr % d.pageSize
		n := min(uint64(len(p)-done), d.pageSize-pageOff)
		if err := d.readInPage(p[done:done+int(n)], addr); err != nil {
			return done, err
		}
		done += int(n)
		addr += n
		if addr == 0 && done < len(p) { // wrapped past 2^64
			return done, &PhysError{Addr: addr, Offset: -1, Err: ErrNotPresent}
		}
	}
	return done, nil
}

// readInPage reads dst (within one page) at addr.
func (d *Dump) readInPage(dst []byte, addr uint64) error {
	if d.elf != nil {
		return d.elf.read(dst, addr)
	}
	pfn := addr / d.pageSize
	off := int(addr % d.pageSize)
	k := d.partFor(pfn)
	if k == nil {
		return &PhysError{Addr: addr, Offset: -1, Err: ErrNotPresent, Detail: "in no file of the split dump"}
	}
	if d.cache.copyOut(pfn, off, dst) {
		return nil
	}
	buf := d.pageBuf()
	defer d.putPageBuf(buf)
	page, viewed, err := k.readPage(pfn, buf)
	if err != nil {
		return err
	}
	if !viewed {
		d.cache.put(pfn, page)
	}
	copy(dst, page[off:])
	return nil
}

func (d *Dump) partFor(pfn uint64) *kdumpFile {
	i := sort.Search(len(d.parts), func(i int) bool { return d.parts[i].endPFN > pfn })
	if i == len(d.parts) || d.parts[i].startPFN > pfn {
		if len(d.parts) == 1 {
			return d.parts[0] // its descriptor lookup explains why
		}
		return nil
	}
	return d.parts[i]
}

// PageEncoding reports how the page at pfn is stored (kdump only); tests
// and benchmarks use it to pick pages of each encoding.
func (d *Dump) PageEncoding(pfn uint64) (Compression, error) {
	if d.parts == nil {
		return CompressionNone, nil
	}
	k := d.partFor(pfn)
	if k == nil {
		return 0, &PhysError{Addr: pfn * d.pageSize, Offset: -1, Err: ErrNotPresent}
	}
	pd, _, err := k.descriptor(pfn)
	if err != nil {
		return 0, err
	}
	return compressionOf(pd.Flags)
}

// MaxPFN is one past the highest page frame the dump can describe.
func (d *Dump) MaxPFN() uint64 {
	if d.parts != nil {
		return d.parts[0].maxMapnr
	}
	var end uint64
	for _, g := range d.elf.phys {
		end = max(end, (g.PAddr+g.MemSz+d.pageSize-1)/d.pageSize)
	}
	return end
}
