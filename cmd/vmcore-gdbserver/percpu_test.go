package main

import (
	"debug/elf"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// perCPUCurrent is the vmlinux's per-CPU symbol that holds a CPU's current
// task (current_task, in pcpu_hot from 6.2 on), its link address, and the
// gdb expression of CPU cpu's current task's comm read through it.
func perCPUCurrent(t testing.TB, vmlinux string) (sym string, link uint64, comm func(cpu int) string) {
	t.Helper()
	f, syms := elfSymbols(t, vmlinux)
	defer f.Close()
	percpu := f.Section(".data..percpu")
	if percpu == nil || percpu.Addr != 0 {
		t.Fatalf("%s has no .data..percpu at 0", vmlinux)
	}
	found := map[string]uint64{}
	for _, s := range syms {
		if (s.Name == "current_task" || s.Name == "pcpu_hot") && int(s.Section) < len(f.Sections) && f.Sections[s.Section] == percpu {
			found[s.Name] = s.Value
		}
	}
	if v, ok := found["current_task"]; ok {
		return "current_task", v, func(cpu int) string {
			return fmt.Sprintf("p (*(struct task_struct **)((char *)&current_task + __per_cpu_offset[%d]))->comm", cpu)
		}
	}
	if v, ok := found["pcpu_hot"]; ok {
		return "pcpu_hot", v, func(cpu int) string {
			return fmt.Sprintf("p ((struct pcpu_hot *)((char *)&pcpu_hot + __per_cpu_offset[%d]))->current_task->comm", cpu)
		}
	}
	t.Fatalf("%s has neither current_task nor pcpu_hot in .data..percpu", vmlinux)
	return
}

// elfSymbols opens the vmlinux with debug/elf (not this project's
// reader: the test's own view of the file) and reads its symbol table.
func elfSymbols(t testing.TB, vmlinux string) (*elf.File, []elf.Symbol) {
	t.Helper()
	f, err := elf.Open(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.Symbols()
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return f, syms
}

// funcAt is the vmlinux function symbol that holds the link address pc.
func funcAt(t testing.TB, vmlinux string, pc uint64) string {
	t.Helper()
	f, syms := elfSymbols(t, vmlinux)
	defer f.Close()
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value <= pc && pc < s.Value+s.Size {
			return s.Name
		}
	}
	return ""
}

func kernelOffset(t testing.TB, f gdbFixture) uint64 {
	t.Helper()
	d, err := vmcore.Open(f.paths(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vi, err := d.VMCOREINFO()
	if err != nil {
		t.Fatal(err)
	}
	return vi.KernelOffset
}

var hexValue = regexp.MustCompile(`(?m)^\$\d+ = (0x[0-9a-f]+)$`)

// Per-CPU variables with nothing on the client: gdb with no file of its
// own loads the vmlinux through the connection and places the per-CPU
// symbols at their link addresses, the rest at the KASLR offset, so
// &var + __per_cpu_offset[cpu] is CPU cpu's variable. With its own copy of
// the vmlinux (the other flow) text and data symbols stay right, per-CPU
// ones move with the data (README, "KASLR and per-CPU symbols").
func TestGDBPerCPUNoFile(t *testing.T) {
	gdb := requireGDB(t)
	// (6.1's file-less session is TestGDBRemoteFiles': each takes minutes,
	// gdb reading the vmlinux through the connection.)
	for _, name := range []string{"oom-elf", "6.12-oom-elf", "4.18-oom-elf"} {
		f := gdbFixtureNamed(t, name)
		t.Run(name, func(t *testing.T) {
			vmlinux, dumps := f.vmlinux(t), f.paths(t)
			sym, link, comm := perCPUCurrent(t, vmlinux)
			kaslr := kernelOffset(t, f)
			jiffies := strconv.FormatUint(dumpU64(t, f, "jiffies_64"), 10)
			cmds := []string{"set pagination off", "set width 0",
				"target remote | " + serverCmd(vmlinux, dumps),
				"info threads 1-2", "p jiffies_64", "p/x $pc", "info symbol $pc",
				"p/x (unsigned long)&" + sym, comm(0), comm(1),
				"echo ==END==\\n"} // a last command that succeeds: the exit status

			flows := []bool{false, true}
			if name == "oom-elf" {
				flows = []bool{true}
			}
			for _, local := range flows {
				args := append([]string{"-q", "-batch", "-nx"}, gdbSlowServer...)
				if local {
					args = append(args, vmlinux)
				}
				for _, c := range cmds {
					args = append(args, "-ex", c)
				}
				cmd := exec.Command(gdb, args...)
				cmd.Dir = t.TempDir() // no kernel files here
				outb, err := cmd.CombinedOutput()
				out := string(outb)
				if err != nil {
					t.Fatalf("gdb: %v\n%s", err, tail(out, 40))
				}
				flow := "no file"
				if local {
					flow = "local file"
				}
				remote := strings.Contains(out, "Reading symbols from target:"+vmlinux)
				if remote == local {
					t.Errorf("%s: symbols read through the connection: %v\n%s", flow, remote, grepLines(out, "symbols"))
				}
				if strings.Contains(out, "outside of ELF segments") {
					t.Errorf("%s: %s", flow, grepLines(out, "outside of ELF segments"))
				}
				ts := parseThreads(out)
				vals := printValue.FindAllStringSubmatch(out, -1)
				hexes := hexValue.FindAllStringSubmatch(out, -1)
				if len(ts) != 2 || len(vals) < 3 || (!local && len(vals) != 5) || len(hexes) != 2 {
					t.Fatalf("%s: unexpected output:\n%s", flow, tail(out, 30))
				}
				if vals[0][1] != jiffies {
					t.Errorf("%s: jiffies_64 %s, the dump's %s", flow, vals[0][1], jiffies)
				}
				pc, _ := strconv.ParseUint(hexes[0][1], 0, 64)
				fn := funcAt(t, vmlinux, pc-kaslr)
				if fn == "" || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(fn)+` \+ \d+ in section \.text of `).MatchString(out) {
					t.Errorf("%s: pc %#x is in %q of the vmlinux (KASLR %#x), gdb says:\n%s", flow, pc, fn, kaslr, grepLines(out, "in section"))
				}
				addr, _ := strconv.ParseUint(hexes[1][1], 0, 64)
				if local {
					// Known: moved with the data segment.
					t.Logf("local file: &%s = %#x (link address %#x)", sym, addr, link)
					continue
				}
				if addr != link {
					t.Errorf("&%s = %#x, its link address is %#x", sym, addr, link)
				}
				for cpu := 0; cpu < 2; cpu++ {
					if ts[cpu].cpu != cpu || !ts[cpu].running {
						t.Fatalf("thread %d is not CPU %d's task: %+v", cpu+1, cpu, ts[cpu])
					}
					if !strings.HasPrefix(vals[cpu+3][1], `"`+ts[cpu].name+`\000`) {
						t.Errorf("CPU %d: per-CPU current task is %s, the server's is %q", cpu, vals[cpu+3][1], ts[cpu].name)
					}
				}
			}
		})
	}
}

// checkPerCPU checks the output of `info threads 1-2`, `p/x &SYM` and the
// two CPUs' comm expressions of perCPUCurrent: SYM at its link address,
// and each CPU's current task through __per_cpu_offset the server's.
func checkPerCPU(t *testing.T, out, sym string, link uint64) {
	t.Helper()
	ts := parseThreads(out)
	vals := printValue.FindAllStringSubmatch(out, -1)
	if len(ts) != 2 || len(vals) != 3 {
		t.Fatalf("per-CPU reads: unexpected output:\n%s", tail(out, 20))
	}
	if addr, _ := strconv.ParseUint(vals[0][1], 0, 64); addr != link {
		t.Errorf("&%s = %s, its link address is %#x", sym, vals[0][1], link)
	}
	for cpu := 0; cpu < 2; cpu++ {
		if ts[cpu].cpu != cpu || !ts[cpu].running {
			t.Fatalf("thread %d is not CPU %d's task: %+v", cpu+1, cpu, ts[cpu])
		}
		if !strings.HasPrefix(vals[cpu+1][1], `"`+ts[cpu].name+`\000`) {
			t.Errorf("CPU %d: per-CPU current task is %s, the server's is %q", cpu, vals[cpu+1][1], ts[cpu].name)
		}
	}
}
