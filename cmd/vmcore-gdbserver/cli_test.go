package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

var cliBinary string

// gdbSlowServer holds gdb options for a server slower than gdb's default
// remotetimeout (2 s) allows: go test runs packages side by side on a
// 2-core CI machine, and the first reply builds the kernel model from
// DWARF (~1 s alone); a server built with -race is some ten times slower.
var gdbSlowServer = []string{"-iex", "set remotetimeout 60"}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmcore-gdbserver-test")
	if err != nil {
		panic(err)
	}
	cliBinary = filepath.Join(dir, "vmcore-gdbserver")
	// No test reaches a debuginfod server it did not start (Debian's
	// profile names debuginfod.debian.net for login shells); gdb's own
	// debuginfod stays off too.
	os.Unsetenv("DEBUGINFOD_URLS")
	// VMCORE_TEST_RACE=1 builds the server with the race detector, so the
	// tests that run several clients at once check the server itself.
	build := []string{"build", "-o", cliBinary}
	if os.Getenv("VMCORE_TEST_RACE") != "" {
		build = append(build, "-race")
		// A race ends the server at once, which fails the client's test.
		os.Setenv("GORACE", "halt_on_error=1 exitcode=66")
	}
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run executes the CLI and returns stdout, stderr and the exit status.
func runCLI(t *testing.T, args ...string) ([]byte, string, int) {
	t.Helper()
	cmd := exec.Command(cliBinary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), errb.String(), code
}

// A failure a user can cause is one line, with no Go stack trace.
func checkOneLineError(t *testing.T, stderr string, code int, want ...string) {
	t.Helper()
	if code != 1 {
		t.Fatalf("exit status %d, want 1 (stderr %q)", code, stderr)
	}
	// A Go panic starts its own line with "panic: " and names goroutines.
	if strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic: ") {
		t.Fatalf("error is not one line: %q", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Fatalf("error %q does not mention %q", stderr, w)
		}
	}
}

type fixtureCase struct {
	name        string
	files       []string
	format      string
	compression []string
	level       any // float64 from JSON, or nil
	paging      float64
	qemu        bool
}

var cases = []fixtureCase{
	{"oom-elf", []string{"oom/vmcore.elf"}, "elf", []string{"none"}, nil, 4, false},
	{"oom-lzo", []string{"oom/vmcore.lzo"}, "kdump", []string{"lzo", "none"}, 31.0, 4, false},
	{"oom-zlib", []string{"oom/vmcore.zlib"}, "kdump", []string{"none", "zlib"}, 1.0, 4, false},
	{"oom-flat", []string{"oom/vmcore.flat"}, "kdump-flattened", []string{"lzo", "none"}, 31.0, 4, false},
	{"oom-split", []string{"oom/vmcore.split.1", "oom/vmcore.split.2"}, "kdump", []string{"lzo", "none"}, 31.0, 4, false},
	{"qemu57-elf", []string{"qemu57/vmcore.elf"}, "elf", []string{"none"}, nil, 5, true},
	{"qemu57-kdump", []string{"qemu57/vmcore.kdump-zlib"}, "kdump-flattened", []string{"none", "zlib"}, 1.0, 5, true},
}

func (c fixtureCase) paths(t *testing.T) []string {
	var p []string
	for _, f := range c.files {
		p = append(p, fixtures.Path(t, strings.Split(f, "/")...))
	}
	return p
}

func infoJSON(t *testing.T, paths []string) map[string]any {
	t.Helper()
	out, stderr, code := runCLI(t, append([]string{"info", "--json"}, paths...)...)
	if code != 0 {
		t.Fatalf("info: %s", stderr)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	return m
}

func TestInfoJSON(t *testing.T) {
	kdir, _ := filepath.EvalSymlinks(fixtures.Dir(t))
	release := filepath.Base(kdir) // the generator keys the cache by kernel release
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := infoJSON(t, c.paths(t))
			check := func(key string, want any) {
				t.Helper()
				if fmt.Sprint(m[key]) != fmt.Sprint(want) {
					t.Errorf("%s = %v, want %v", key, m[key], want)
				}
			}
			check("format", c.format)
			check("compression", c.compression)
			check("dump_level", c.level)
			check("page_size", 4096)
			check("cpus", 2)
			check("osrelease", release)
			check("paging_levels", c.paging)
			check("incomplete", false)
			for _, key := range []string{"kaslr_offset", "phys_base"} {
				s, _ := m[key].(string)
				if _, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64); err != nil || !strings.HasPrefix(s, "0x") {
					t.Errorf("%s = %q, want a 0x number", key, s)
				}
			}
			if m["pages_dumped"].(float64) < 10000 {
				t.Errorf("pages_dumped %v", m["pages_dumped"])
			}
			if c.level == 31.0 && m["pages_excluded"].(float64) == 0 {
				t.Error("dump level 31 but nothing excluded")
			}
			if got := m["qemu_cpu_notes"].(float64) > 0; got != c.qemu {
				t.Errorf("qemu notes %v", m["qemu_cpu_notes"])
			}
		})
	}
}

// linux_banner, located with the vmlinux symbol table and the dump's
// KERNELOFFSET, reads "Linux version <osrelease> ..." through `read` from
// every format, QEMU's included.
func TestReadLinuxBanner(t *testing.T) {
	v, err := symbols.Open(fixtures.Path(t, "kernel", "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := infoJSON(t, c.paths(t))
			off, _ := strconv.ParseUint(strings.TrimPrefix(m["kaslr_offset"].(string), "0x"), 16, 64)
			addr, err := v.Address("linux_banner", off)
			if err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{"read"}, c.paths(t)...), fmt.Sprintf("0x%x", addr), "200")
			out, stderr, code := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("read: %s", stderr)
			}
			want := "Linux version " + m["osrelease"].(string) + " "
			if !bytes.HasPrefix(out, []byte(want)) || len(out) != 200 {
				t.Fatalf("banner %q, want prefix %q", out, want)
			}
			// --hex prints the same bytes with addresses.
			args = append(append([]string{"read", "--hex"}, c.paths(t)...), fmt.Sprintf("0x%x", addr), "16")
			hex, _, _ := runCLI(t, args...)
			if !bytes.HasPrefix(hex, []byte(fmt.Sprintf("%016x: 4c69 6e75 7820", addr))) {
				t.Fatalf("--hex: %q", hex)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	lzo := fixtures.Path(t, "oom", "vmcore.lzo")
	d, err := vmcore.Open(lzo)
	if err != nil {
		t.Fatal(err)
	}
	var excluded uint64
	found := false
	buf := make([]byte, 8)
	for pfn := uint64(0x1000); pfn < d.MaxPFN() && !found; pfn++ {
		if _, err := d.ReadPhys(buf, pfn*4096); errors.Is(err, vmcore.ErrExcluded) {
			excluded, found = pfn*4096, true
		}
	}
	d.Close()
	if !found {
		t.Fatal("no excluded page in a -d 31 dump")
	}
	_, stderr, code := runCLI(t, "read", "--phys", lzo, fmt.Sprintf("0x%x", excluded), "8")
	checkOneLineError(t, stderr, code, "excluded", fmt.Sprintf("0x%x", excluded))

	_, stderr, code = runCLI(t, "read", "--phys", lzo, "0x7fffffff0000", "8")
	checkOneLineError(t, stderr, code, "not present", "0x7fffffff0000")

	_, stderr, code = runCLI(t, "read", lzo, "0x8000000000000000", "8")
	checkOneLineError(t, stderr, code, "not mapped", "non-canonical")

	// Just below the randomized direct map nothing is mapped.
	m := infoJSON(t, []string{fixtures.Path(t, "oom", "vmcore.elf")})
	base, _ := strconv.ParseUint(strings.TrimPrefix(m["direct_map_base"].(string), "0x"), 16, 64)
	_, stderr, code = runCLI(t, "read", lzo, fmt.Sprintf("0x%x", base-0x1000), "8")
	checkOneLineError(t, stderr, code, "not mapped", "entry")
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("this is not a vmcore\n"), 0o644)
	_, stderr, code := runCLI(t, "info", text)
	checkOneLineError(t, stderr, code, text, "offset 0x0", "not a vmcore")

	// A kdump header with a damaged block size.
	lzo, err := os.ReadFile(fixtures.Path(t, "oom", "vmcore.lzo"))
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.kdump")
	hdr := append([]byte(nil), lzo[:8192]...)
	hdr[428] = 3
	os.WriteFile(bad, hdr, 0o644)
	_, stderr, code = runCLI(t, "info", bad)
	checkOneLineError(t, stderr, code, bad, "offset 0x1ac", "block_size")

	_, stderr, code = runCLI(t, "info", filepath.Join(dir, "missing"))
	checkOneLineError(t, stderr, code, "missing", "no such file")

	// An ELF and a kdump are not a split pair.
	_, stderr, code = runCLI(t, "info", fixtures.Path(t, "oom", "vmcore.elf"), fixtures.Path(t, "oom", "vmcore.lzo"))
	checkOneLineError(t, stderr, code, "split")
}

// A dump cut short (a full disk) still opens, says so, and serves what
// it has.
func TestTruncatedDump(t *testing.T) {
	lzoPath := fixtures.Path(t, "oom", "vmcore.lzo")
	full, err := os.ReadFile(lzoPath)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.lzo")
	os.WriteFile(cut, full[:len(full)*3/5], 0o644)
	m := infoJSON(t, []string{cut})
	if m["incomplete"] != true {
		t.Fatalf("truncated dump not reported incomplete: %v", m["incomplete"])
	}
	// The first stored page lies early in the file: it must still read,
	// and equal the complete dump's copy.
	fullDump, err := vmcore.Open(lzoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer fullDump.Close()
	page := make([]byte, 4096)
	var first uint64
	for first = 0; first < fullDump.MaxPFN(); first++ {
		if _, err := fullDump.ReadPhys(page, first*4096); err == nil {
			break
		}
	}
	out, stderr, code := runCLI(t, "read", "--phys", cut, fmt.Sprintf("0x%x", first*4096), "4096")
	if code != 0 || !bytes.Equal(out, page) {
		t.Fatalf("pfn 0x%x before the cut: %s", first, stderr)
	}
	d, err := vmcore.Open(cut)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	missing := 0
	buf := make([]byte, 8)
	for pfn := d.MaxPFN() - 1; pfn > 0 && missing == 0; pfn-- {
		if _, err := d.ReadPhys(buf, pfn*4096); errors.Is(err, vmcore.ErrIncomplete) {
			missing++
		}
	}
	if missing == 0 {
		t.Fatal("no page reported missing from the cut dump")
	}
}

// A dump cut at several points opens, says it is incomplete and serves
// every page that made it into the file, identical to the whole dump's.
func TestTruncatedAtSeveralPoints(t *testing.T) {
	for _, name := range []string{"vmcore.lzo", "vmcore.elf"} {
		full, err := vmcore.Open(fixtures.Path(t, "oom", name))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(fixtures.Path(t, "oom", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, frac := range []float64{0.1, 0.5, 0.9, 0.999} {
			cut := filepath.Join(t.TempDir(), name)
			os.WriteFile(cut, data[:int(float64(len(data))*frac)], 0o644)
			d, err := vmcore.Open(cut)
			if err != nil {
				t.Fatalf("%s cut at %.1f%%: %v", name, frac*100, err)
			}
			if !d.Incomplete() {
				t.Errorf("%s cut at %.1f%%: not reported incomplete", name, frac*100)
			}
			good, missing := 0, 0
			a, b := make([]byte, 4096), make([]byte, 4096)
			for pfn := uint64(0); pfn < d.MaxPFN(); pfn += 7 {
				_, errFull := full.ReadPhys(a, pfn*4096)
				if errFull != nil {
					continue
				}
				_, err := d.ReadPhys(b, pfn*4096)
				switch {
				case err == nil:
					if !bytes.Equal(a, b) {
						t.Fatalf("%s cut: pfn 0x%x differs from the whole dump", name, pfn)
					}
					good++
				case errors.Is(err, vmcore.ErrIncomplete):
					missing++
				default:
					t.Fatalf("%s cut: pfn 0x%x: %v", name, pfn, err)
				}
			}
			if good == 0 || (frac < 0.99 && missing == 0) {
				t.Errorf("%s cut at %.1f%%: %d pages read, %d missing", name, frac*100, good, missing)
			}
			d.Close()
			m := infoJSON(t, []string{cut})
			if m["incomplete"] != true {
				t.Errorf("info --json of the cut %s: incomplete %v", name, m["incomplete"])
			}
		}
		full.Close()
	}
}

// One compressed page overwritten with garbage in a real makedumpfile
// file: that page is reported corrupt with its file offset, the rest
// reads as before.
func TestCorruptPageInRealDump(t *testing.T) {
	src := fixtures.Path(t, "oom", "vmcore.lzo")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := vmcore.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var victim, neighbour uint64
	found := 0
	for pfn := uint64(0x1000); pfn < d.MaxPFN() && found < 2; pfn++ {
		if c, err := d.PageEncoding(pfn); err == nil && c == vmcore.CompressionLZO {
			if found == 0 {
				victim = pfn
			} else {
				neighbour = pfn
			}
			found++
		}
	}
	if found < 2 {
		t.Fatal("no lzo pages")
	}
	// Garble the middle of the victim's stored bytes.
	bad := filepath.Join(t.TempDir(), "bad.lzo")
	off, size := pageDataExtent(t, data, d, victim)
	for i := off + size/4; i < off+size*3/4; i++ {
		data[i] ^= 0x5a
	}
	os.WriteFile(bad, data, 0o644)
	_, stderr, code := runCLI(t, "read", "--phys", bad, fmt.Sprintf("0x%x", victim*4096), "4096")
	checkOneLineError(t, stderr, code, "corrupt", fmt.Sprintf("0x%x", victim*4096), fmt.Sprintf("offset 0x%x", off))
	want := make([]byte, 4096)
	d.ReadPhys(want, neighbour*4096)
	out, stderr, code := runCLI(t, "read", "--phys", bad, fmt.Sprintf("0x%x", neighbour*4096), "4096")
	if code != 0 || !bytes.Equal(out, want) {
		t.Fatalf("neighbour page: %s", stderr)
	}
}

// pageDataExtent reads a pfn's page descriptor (kdump layout) to find its
// stored bytes: the header fields say where the descriptor table is.
func pageDataExtent(t *testing.T, data []byte, d *vmcore.Dump, pfn uint64) (int, int) {
	h, _ := d.KdumpHeader()
	bs := uint64(h.BlockSize)
	descOff := (1 + uint64(h.SubHdrSize) + uint64(h.BitmapBlocks)) * bs
	bitmap2 := data[(1+uint64(h.SubHdrSize))*bs+uint64(h.BitmapBlocks)/2*bs:]
	idx := uint64(0)
	for p := uint64(0); p < pfn; p++ {
		if bitmap2[p/8]&(1<<(p%8)) != 0 {
			idx++
		}
	}
	desc := data[descOff+idx*24:]
	return int(binary.LittleEndian.Uint64(desc)), int(binary.LittleEndian.Uint32(desc[8:]))
}
