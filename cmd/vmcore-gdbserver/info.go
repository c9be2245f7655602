package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// dumpInfo is `info --json`: field names are a stable interface.
type dumpInfo struct {
	Files         []string          `json:"files"`
	Format        string            `json:"format"`
	HeaderVersion *int32            `json:"header_version,omitempty"`
	Compression   []string          `json:"compression"`
	PagesByMethod map[string]uint64 `json:"pages_by_compression,omitempty"`
	DumpLevel     *int              `json:"dump_level"`
	PageSize      uint64            `json:"page_size"`
	CPUs          int               `json:"cpus"`
	PRStatusPIDs  []int32           `json:"prstatus_pids"`
	QEMUCPUNotes  int               `json:"qemu_cpu_notes"`
	OSRelease     string            `json:"osrelease"`
	BuildID       string            `json:"build_id,omitempty"`
	CrashTime     *int64            `json:"crash_time,omitempty"`
	KASLROffset   string            `json:"kaslr_offset"`
	PhysBase      string            `json:"phys_base"`
	PagingLevels  int               `json:"paging_levels"`
	PageTableRoot string            `json:"page_table_root,omitempty"`
	RootSource    string            `json:"page_table_root_source,omitempty"`
	DirectMapBase string            `json:"direct_map_base,omitempty"`
	PagesDumped   uint64            `json:"pages_dumped"`
	PagesExcluded uint64            `json:"pages_excluded"`
	Incomplete    bool              `json:"incomplete"`
	Notes         []string          `json:"notes,omitempty"`
}

func newInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info [--json] VMCORE...",
		Short: "Describe a dump: format, compression, kernel release, KASLR, paging",
		Example: `  vmcore-gdbserver info vmcore
  vmcore-gdbserver info --json vmcore.1 vmcore.2   # a --split pair`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := vmcore.Open(args...)
			if err != nil {
				return err
			}
			defer d.Close()
			info, err := describe(d)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			printInfo(cmd.OutOrStdout(), info)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func hexStr(v uint64) string { return fmt.Sprintf("0x%x", v) }

func describe(d *vmcore.Dump) (*dumpInfo, error) {
	in := &dumpInfo{
		Files:        d.Files(),
		Format:       d.Format().String(),
		PageSize:     d.PageSize(),
		CPUs:         d.CPUs(),
		QEMUCPUNotes: len(d.QEMUCPUs()),
		Incomplete:   d.Incomplete(),
		PRStatusPIDs: []int32{},
	}
	for _, p := range d.PRStatus() {
		in.PRStatusPIDs = append(in.PRStatusPIDs, p.PID)
	}
	// vmcore does not believe a header nr_cpus no kernel supports and
	// counts the CPU notes; say so when it did.
	if h, _ := d.KdumpHeader(); h != nil && int(h.NrCPUs) != in.CPUs {
		in.Notes = append(in.Notes, fmt.Sprintf("%s: header nr_cpus %d is no CPU count any kernel has; counting the dump's CPU notes instead", d.Files()[0], h.NrCPUs))
	}
	if h, _ := d.KdumpHeader(); h != nil {
		v := h.HeaderVersion
		in.HeaderVersion = &v
	}
	if lvl, ok := d.DumpLevel(); ok {
		in.DumpLevel = &lvl
	}
	methods, err := d.Compressions()
	if err != nil {
		in.Notes = append(in.Notes, err.Error())
	}
	if methods == nil {
		in.Compression = []string{"none"}
	} else {
		in.PagesByMethod = map[string]uint64{}
		for c, n := range methods {
			in.Compression = append(in.Compression, c.String())
			in.PagesByMethod[c.String()] = n
		}
		sort.Strings(in.Compression)
		if len(in.Compression) == 0 {
			in.Compression = []string{"none"}
		}
	}
	pc := d.PageCounts()
	in.PagesDumped, in.PagesExcluded = pc.Dumped, pc.Excluded

	vi, err := d.VMCOREINFO()
	if err != nil {
		in.Notes = append(in.Notes, err.Error())
	}
	if vi != nil {
		in.OSRelease = vi.OSRelease
		in.BuildID = vi.BuildID
		if vi.HasCrashTime {
			t := vi.CrashTime
			in.CrashTime = &t
		}
		if vi.HasKernelOffset {
			in.KASLROffset = hexStr(vi.KernelOffset)
		}
	}
	k, err := d.Kernel()
	if err != nil {
		in.Notes = append(in.Notes, err.Error())
		in.PagingLevels = 4
		if vi != nil && vi.PgtableL5 {
			in.PagingLevels = 5
		}
	} else {
		in.PagingLevels = k.Levels()
		in.PageTableRoot = hexStr(k.Root())
		in.RootSource = k.RootSource
		if pb, ok := k.PhysBase(); ok {
			in.PhysBase = hexStr(pb)
		}
		if b, ok := k.DirectMap(); ok {
			in.DirectMapBase = hexStr(b)
		}
		in.Notes = append(in.Notes, k.Notes...)
	}
	return in, nil
}

func printInfo(w io.Writer, in *dumpInfo) {
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-15s %s\n", k+":", v)
		}
	}
	row("files", strings.Join(in.Files, " "))
	f := in.Format
	if in.HeaderVersion != nil {
		f += fmt.Sprintf(" (header version %d)", *in.HeaderVersion)
	}
	row("format", f)
	comp := strings.Join(in.Compression, ", ")
	if len(in.PagesByMethod) > 0 {
		var parts []string
		for _, c := range in.Compression {
			parts = append(parts, fmt.Sprintf("%s (%d pages)", c, in.PagesByMethod[c]))
		}
		comp = strings.Join(parts, ", ")
	}
	row("compression", comp)
	if in.DumpLevel != nil {
		row("dump level", fmt.Sprint(*in.DumpLevel))
	} else {
		row("dump level", "not recorded (ELF)")
	}
	row("page size", fmt.Sprint(in.PageSize))
	row("cpus", fmt.Sprintf("%d (NT_PRSTATUS pids %v, %d QEMU CPU notes)", in.CPUs, in.PRStatusPIDs, in.QEMUCPUNotes))
	row("osrelease", in.OSRelease)
	row("build id", in.BuildID)
	if in.CrashTime != nil {
		row("crash time", time.Unix(*in.CrashTime, 0).UTC().Format(time.RFC3339))
	}
	row("kaslr offset", in.KASLROffset)
	row("phys_base", in.PhysBase)
	row("paging", fmt.Sprintf("%d-level", in.PagingLevels))
	if in.PageTableRoot != "" {
		row("page tables", in.PageTableRoot+" from "+in.RootSource)
	}
	row("direct map", in.DirectMapBase)
	row("pages", fmt.Sprintf("%d dumped, %d excluded", in.PagesDumped, in.PagesExcluded))
	inc := "no"
	if in.Incomplete {
		inc = "YES: the dump was cut short; missing pages read as errors"
	}
	row("incomplete", inc)
	for _, n := range in.Notes {
		row("note", n)
	}
}
