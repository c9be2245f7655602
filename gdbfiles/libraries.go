package gdbfiles

import (
	"bytes"
	"fmt"
	"os"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/gdbstub"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
)

// LibrariesXML describes the loaded modules as gdb shared libraries
// (qXfer:libraries:read): for each module whose file is found, one
// <section address> per SHF_ALLOC section of the .ko in its section
// order, placed where sect_attrs says the kernel put it. Sections the
// kernel did not keep (__versions, .modinfo, empty ones) go to distinct
// non-canonical addresses, where no kernel pointer can point, so gdb never
// names a real value after them. The notes say which modules were left
// out and why.
//
// Each file is opened once, read-only, and its sections read from that
// descriptor; with served set, the descriptor is kept there under the name
// the list gives gdb, so what gdb reads through the connection is the
// file described.
func LibrariesXML(mods []*kernel.Module, files *ModuleFiles, served *Served) ([]byte, []string) {
	var notes []string
	var b bytes.Buffer
	b.WriteString("<library-list>\n")
	for _, m := range mods {
		if files == nil {
			break
		}
		path, f, secs, err := openModule(m, files)
		if err == nil && served != nil {
			err = served.Add(path, f)
		} else if f != nil {
			f.Close()
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("module %s: %v", m.Name, err))
			continue
		}
		addr := map[string]uint64{}
		for _, s := range m.Sections {
			addr[s.Name] = s.Addr
		}
		fmt.Fprintf(&b, "  <library name=\"%s\">\n", gdbstub.EscapeXML(path))
		for i, s := range secs {
			a, ok := addr[s]
			if !ok {
				a = discardedSectionBase + uint64(i)<<32
			}
			fmt.Fprintf(&b, "    <section address=\"0x%x\"/>\n", a)
		}
		b.WriteString("  </library>\n")
	}
	b.WriteString("</library-list>\n")
	return b.Bytes(), notes
}

// openModule opens the module's file (FindModule) and reads its
// allocated sections.
func openModule(m *kernel.Module, files *ModuleFiles) (string, *os.File, []string, error) {
	path, err := files.FindModule(m)
	if err != nil {
		return "", nil, nil, err
	}
	f, _, err := rofile.Open(path)
	if err != nil {
		return "", nil, nil, err
	}
	secs, err := allocSections(f, path)
	if err != nil {
		f.Close()
		return "", nil, nil, err
	}
	return path, f, secs, nil
}

// discardedSectionBase is non-canonical under 4- and 5-level paging.
const discardedSectionBase = 0x8000000000000000
