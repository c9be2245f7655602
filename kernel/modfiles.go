package kernel

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// ModuleFiles finds the .ko of loaded modules in directories (searched
// recursively, in order): plain, .ko.xz or .ko.zst, and separate debug
// files. Compressed ones are decompressed into CacheDir, since gdb needs a
// file it can open.
type ModuleFiles struct {
	Dirs     []string
	CacheDir string

	once  sync.Once
	index map[string]string // normalized module name -> path
}

// DefaultModuleDirs are where Debian puts module debug files and modules.
func DefaultModuleDirs(release string) []string {
	return []string{"/usr/lib/debug/lib/modules/" + release, "/lib/modules/" + release}
}

// normalizeModName maps file and module names alike: the kernel turns
// '-' into '_' in module names.
func normalizeModName(n string) string { return strings.ReplaceAll(n, "-", "_") }

func (f *ModuleFiles) build() {
	f.index = map[string]string{}
	for _, dir := range f.Dirs {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			name := d.Name()
			for _, ext := range []string{".ko", ".ko.debug", ".ko.xz", ".ko.zst"} {
				if strings.HasSuffix(name, ext) {
					mod := normalizeModName(strings.TrimSuffix(name, ext))
					if _, seen := f.index[mod]; !seen { // earlier dirs win
						f.index[mod] = path
					}
				}
			}
			return nil
		})
	}
}

// Find returns a loadable (uncompressed) file for the module.
func (f *ModuleFiles) Find(module string) (string, error) {
	f.once.Do(f.build)
	path, ok := f.index[normalizeModName(module)]
	if !ok {
		return "", fmt.Errorf("no %s.ko in %s", module, strings.Join(f.Dirs, ", "))
	}
	switch {
	case strings.HasSuffix(path, ".ko.zst"), strings.HasSuffix(path, ".ko.xz"):
		return f.decompress(path)
	}
	return path, nil
}

func (f *ModuleFiles) decompress(path string) (string, error) {
	dir := f.CacheDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "vmcore-gdbserver-modules")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	base := filepath.Base(path)
	out := filepath.Join(dir, strings.TrimSuffix(strings.TrimSuffix(base, ".xz"), ".zst"))
	if st, err := os.Stat(out); err == nil && st.Size() > 0 {
		return out, nil
	}
	var data []byte
	var err error
	if strings.HasSuffix(path, ".zst") {
		var in *os.File
		if in, err = os.Open(path); err != nil {
			return "", err
		}
		defer in.Close()
		var dec *zstd.Decoder
		if dec, err = zstd.NewReader(in, zstd.WithDecoderMaxMemory(1<<30)); err != nil {
			return "", err
		}
		defer dec.Close()
		data, err = io.ReadAll(dec)
	} else {
		// Go has no xz decoder in its standard library; xz-utils is on
		// every Debian system.
		data, err = exec.Command("xz", "-dc", path).Output()
	}
	if err != nil {
		return "", fmt.Errorf("decompressing %s: %w", path, err)
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// AllocSections lists the SHF_ALLOC sections of a .ko in file order: what
// gdb relocates, one address each.
func AllocSections(path string) ([]string, error) {
	ef, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	if ef.Type != elf.ET_REL {
		return nil, fmt.Errorf("%s: not a relocatable module (type %v)", path, ef.Type)
	}
	var out []string
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

// LibrariesXML describes the loaded modules as gdb shared libraries
// (qXfer:libraries:read): for each module whose file is found, one
// <section address> per SHF_ALLOC section of the .ko in its section
// order, placed where sect_attrs says the kernel put it. Sections the
// kernel did not keep (__versions, .modinfo, empty ones) go to distinct
// non-canonical addresses, where no kernel pointer can point, so gdb never
// names a real value after them.
func (k *Kernel) LibrariesXML(files *ModuleFiles) ([]byte, []string) {
	mods, err := k.Modules()
	var notes []string
	if err != nil {
		notes = append(notes, err.Error())
	}
	var b bytes.Buffer
	b.WriteString("<library-list>\n")
	for _, m := range mods {
		path, err := files.Find(m.Name)
		if err != nil {
			notes = append(notes, fmt.Sprintf("module %s: %v", m.Name, err))
			continue
		}
		secs, err := AllocSections(path)
		if err != nil {
			notes = append(notes, fmt.Sprintf("module %s: %v", m.Name, err))
			continue
		}
		addr := map[string]uint64{}
		for _, s := range m.Sections {
			addr[s.Name] = s.Addr
		}
		fmt.Fprintf(&b, "  <library name=\"%s\">\n", xmlAttr(path))
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

// discardedSectionBase is non-canonical under 4- and 5-level paging.
const discardedSectionBase = 0x8000000000000000

func xmlAttr(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
