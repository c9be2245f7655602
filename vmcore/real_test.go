package vmcore

// Tests against the real vmcores made by testdata/fixtures/mkfixtures.sh
// from Debian's cloud kernel with QEMU, kdump and makedumpfile.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// The oom scenario's derived files, all made from oom/vmcore.elf.
var oomDerived = []struct {
	name   string
	files  []string
	format Format
	level  int
}{
	{"lzo-d31", []string{"vmcore.lzo"}, FormatKdump, 31},
	{"zlib-d1", []string{"vmcore.zlib"}, FormatKdump, 1},
	{"flat-lzo-d31", []string{"vmcore.flat"}, FormatKdumpFlattened, 31},
	{"split-lzo-d31", []string{"vmcore.split.1", "vmcore.split.2"}, FormatKdump, 31},
}

func openFixture(t testing.TB, elem ...string) *Dump {
	t.Helper()
	var paths []string
	dir := fixtures.Dir(t)
	for _, e := range elem {
		paths = append(paths, fixtures.Path(t, filepath.Join(dir, e)[len(dir)+1:]))
	}
	d, err := Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func prefixAll(dir string, files []string) []string {
	var out []string
	for _, f := range files {
		out = append(out, filepath.Join(dir, f))
	}
	return out
}

// Every page the compressed files hold equals the ELF's; every page they
// filtered out reads as ErrExcluded.
func TestRealByteIdentity(t *testing.T) {
	ref := openFixture(t, "oom/vmcore.elf")
	for _, c := range oomDerived {
		t.Run(c.name, func(t *testing.T) {
			d := openFixture(t, prefixAll("oom", c.files)...)
			if d.Format() != c.format {
				t.Fatalf("format %v, want %v", d.Format(), c.format)
			}
			if lvl, ok := d.DumpLevel(); !ok || lvl != c.level {
				t.Fatalf("dump level %d, want %d", lvl, c.level)
			}
			got, want := make([]byte, 4096), make([]byte, 4096)
			var same, excluded uint64
			for _, k := range d.parts {
				for pfn := k.startPFN; pfn < k.endPFN; pfn++ {
					addr := pfn * 4096
					_, err := d.ReadPhys(got, addr)
					switch {
					case bitSet(k.bitmap2, pfn):
						if err != nil {
							t.Fatalf("pfn 0x%x: %v", pfn, err)
						}
						if _, err := ref.ReadPhys(want, addr); err != nil {
							t.Fatalf("pfn 0x%x in %s but not in the ELF: %v", pfn, c.name, err)
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("pfn 0x%x: bytes differ from the ELF vmcore", pfn)
						}
						same++
					case k.bitmap1 != nil && bitSet(k.bitmap1, pfn):
						if !errors.Is(err, ErrExcluded) {
							t.Fatalf("pfn 0x%x excluded, got %v", pfn, err)
						}
						excluded++
					default:
						if !errors.Is(err, ErrNotPresent) {
							t.Fatalf("pfn 0x%x is a hole, got %v", pfn, err)
						}
					}
				}
			}
			pc := d.PageCounts()
			if same != pc.Dumped || same < 1000 {
				t.Fatalf("%d pages compared, dump says %d", same, pc.Dumped)
			}
			if c.level == 31 && excluded == 0 {
				t.Fatal("dump level 31 excluded nothing")
			}
			t.Logf("%s: %d pages identical to the ELF, %d excluded", c.name, same, excluded)
		})
	}
}

// The kdump ELF's PT_LOADs state virt->phys for the kernel image and the
// whole direct map: the walker must agree on every page.
func TestRealTranslationAgainstPTLoads(t *testing.T) {
	d := openFixture(t, "oom/vmcore.elf")
	k, err := d.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if k.Levels() != 4 {
		t.Fatalf("oom dump: %d-level paging, want 4", k.Levels())
	}
	var checked, unmapped int
	for _, g := range d.LoadSegments() {
		if g.VAddr == 0 || g.VAddr == g.PAddr {
			continue
		}
		for off := uint64(0); off < g.MemSz; off += 4096 {
			va := g.VAddr + off
			tr, err := k.PageTable.Walk(va)
			if err != nil {
				if IsNotMapped(err) {
					unmapped++
					continue
				}
				t.Fatalf("0x%x: %v", va, err)
			}
			if tr.Phys != g.PAddr+off {
				t.Fatalf("0x%x: walker says 0x%x, PT_LOAD says 0x%x", va, tr.Phys, g.PAddr+off)
			}
			fast, err := k.Translate(va)
			if err != nil || fast.Phys != tr.Phys {
				t.Fatalf("0x%x: fast path 0x%x %v, walker 0x%x", va, fast.Phys, err, tr.Phys)
			}
			checked++
		}
	}
	if checked < 100000 {
		t.Fatalf("only %d pages checked", checked)
	}
	// The direct map covers all RAM; only kernel-image pages the kernel
	// freed and unmapped after boot (init sections) may lack a mapping.
	if unmapped > checked/50 {
		t.Fatalf("%d of %d PT_LOAD pages unmapped", unmapped, checked+unmapped)
	}
	t.Logf("%d pages agree, %d unmapped (freed kernel-image pages)", checked, unmapped)
	if _, ok := k.DirectMap(); !ok {
		t.Error("direct map base not found from the ELF's PT_LOADs")
	}
}

// kernelSyms opens the fixture vmlinux.
func kernelSyms(t testing.TB) *symbols.Vmlinux {
	t.Helper()
	v, err := symbols.Open(fixtures.Path(t, "kernel", "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func readU64(t testing.TB, k *Kernel, va uint64) uint64 {
	t.Helper()
	var b [8]byte
	if _, err := k.Read(b[:], va); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// QEMU dumps carry no virtual addresses, so the ground truth for the
// 5-level walker is the kernel's own layout: page_offset_base (read from
// the dump) + pa -> pa for every page of System RAM, and the kernel text
// at phys_base. QEMU dumps every RAM block, firmware-reserved ranges
// included, which the kernel does not map; System RAM is what the kdump
// kernel listed in the oom ELF's PT_LOADs for the same QEMU machine.
func TestRealTranslation5Level(t *testing.T) {
	v := kernelSyms(t)
	ramDump := openFixture(t, "oom/vmcore.elf")
	isRAM := func(pa uint64) bool {
		for _, g := range ramDump.LoadSegments() {
			if g.VAddr != 0 && g.VAddr < StartKernelMap && pa >= g.PAddr && pa < g.PAddr+g.MemSz {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		file   string
		levels int
	}{{"qemu57/vmcore.elf", 5}, {"oom/vmcore.elf", 4}} {
		t.Run(c.file, func(t *testing.T) {
			d := openFixture(t, c.file)
			k, err := d.Kernel()
			if err != nil {
				t.Fatal(err)
			}
			if k.Levels() != c.levels {
				t.Fatalf("%d-level, want %d", k.Levels(), c.levels)
			}
			vi, _ := d.VMCOREINFO()
			pob := readU64(t, k, mustAddr(t, v, "page_offset_base", vi.KernelOffset))
			if err := k.SetDirectMap(pob); err != nil {
				t.Fatal(err)
			}
			n, reserved := 0, 0
			for _, g := range d.elf.phys {
				for off := uint64(0); off < g.FileSz; off += 4096 {
					pa := g.PAddr + off
					tr, err := k.PageTable.Walk(pob + pa)
					if err != nil {
						if IsNotMapped(err) && !isRAM(pa) {
							reserved++
							continue
						}
						t.Fatalf("direct map of 0x%x: %v", pa, err)
					}
					if tr.Phys != pa {
						t.Fatalf("0x%x: walker says 0x%x, want 0x%x", pob+pa, tr.Phys, pa)
					}
					n++
				}
			}
			text := mustAddr(t, v, "_stext", vi.KernelOffset)
			etext := mustAddr(t, v, "_etext", vi.KernelOffset)
			pb, _ := k.PhysBase()
			for va := text; va < etext; va += 4096 {
				tr, err := k.PageTable.Walk(va)
				if err != nil || tr.Phys != va-StartKernelMap+pb {
					t.Fatalf("text 0x%x: 0x%x %v", va, tr.Phys, err)
				}
				n++
			}
			if n < 100000 {
				t.Fatalf("only %d pages checked", n)
			}
			t.Logf("%d pages agree, %d non-RAM pages unmapped (page_offset_base 0x%x)", n, reserved, pob)
		})
	}
}

// STACK_END_MAGIC (include/uapi/linux/magic.h) sits at the lowest word of
// every task's kernel stack: a vmalloc address with CONFIG_VMAP_STACK.
const stackEndMagic = 0x57AC6E9D

func TestRealVmallocStack(t *testing.T) {
	v := kernelSyms(t)
	b, err := v.BTF()
	if err != nil {
		t.Fatal(err)
	}
	tasksOff, err := b.Offset("task_struct", "tasks")
	if err != nil {
		t.Fatal(err)
	}
	stackOff, err := b.Offset("task_struct", "stack")
	if err != nil {
		t.Fatal(err)
	}
	for _, files := range [][]string{{"oom/vmcore.elf"}, {"oom/vmcore.lzo"}, {"oom/vmcore.split.1", "oom/vmcore.split.2"}, {"qemu57/vmcore.elf"}, {"qemu57/vmcore.kdump-zlib"}} {
		t.Run(files[0], func(t *testing.T) {
			d := openFixture(t, files...)
			k, err := d.Kernel()
			if err != nil {
				t.Fatal(err)
			}
			vi, _ := d.VMCOREINFO()
			initTask, err := v.Address("init_task", vi.KernelOffset)
			if err != nil {
				t.Fatal(err)
			}
			pob := readU64(t, k, mustAddr(t, v, "page_offset_base", vi.KernelOffset))
			// Walk the task list from init_task to its first other task.
			next := readU64(t, k, initTask+tasksOff)
			task := next - tasksOff
			if task == initTask {
				t.Fatal("task list has only init_task")
			}
			stack := readU64(t, k, task+stackOff)
			if stack >= StartKernelMap || (stack >= pob && stack-pob < d.MaxPFN()*4096) {
				t.Fatalf("task 0x%x stack 0x%x is not a vmalloc address", task, stack)
			}
			tr, err := k.Translate(stack)
			if err != nil {
				t.Fatal(err)
			}
			if magic := readU64(t, k, stack); magic&0xffffffff != stackEndMagic {
				t.Fatalf("stack 0x%x (phys 0x%x): 0x%x is not STACK_END_MAGIC", stack, tr.Phys, magic)
			}
		})
	}
}

func mustAddr(t testing.TB, v *symbols.Vmlinux, name string, off uint64) uint64 {
	t.Helper()
	a, err := v.Address(name, off)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Without VMCOREINFO's root and phys_base, translation falls back to CR3 in
// QEMU's CPU note, says so, and still reads the kernel.
func TestRealCR3Fallback(t *testing.T) {
	v := kernelSyms(t)
	for _, file := range []string{"qemu57/vmcore.elf", "qemu57/vmcore.kdump-zlib"} {
		t.Run(file, func(t *testing.T) {
			d := openFixture(t, file)
			vi, err := d.VMCOREINFO()
			if err != nil {
				t.Fatal(err)
			}
			banner := mustAddr(t, v, "linux_banner", vi.KernelOffset)
			d.vmcoreinfo = nil // as if the guest had published none
			k, err := d.Kernel()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains([]byte(k.RootSource), []byte("CR3")) || len(k.Notes) == 0 {
				t.Fatalf("root source %q notes %q: the fallback must say so", k.RootSource, k.Notes)
			}
			if k.Levels() != 5 {
				t.Fatalf("CR4.LA57 says 5 levels, got %d", k.Levels())
			}
			buf := make([]byte, 64)
			if _, err := k.Read(buf, banner); err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(buf, []byte("Linux version "+vi.OSRelease)) {
				t.Fatalf("banner through CR3: %q", buf)
			}
		})
	}
}
