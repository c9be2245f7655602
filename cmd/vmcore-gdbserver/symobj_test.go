package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/triage"
)

// Plain gdb on a dump with no vmlinux anywhere (no debug path, no
// debuginfod): the server offers the symbol object made from the dump's
// kallsyms and BTF as the executable. Checked against the kernel model
// read with the vmlinux: every task is a thread; sleeping tasks' gdb
// backtraces name the same functions as the model's (gdb shows no inlined
// frames here); jiffies_64, init_task.comm and a task's comm read through
// a cast give the dump's values; struct layouts are the vmlinux's; a
// per-CPU variable read through __per_cpu_offset names each CPU's current
// task; info symbol names the function of an address.
func TestGDBWithoutDebugInfo(t *testing.T) {
	for _, set := range fixtures.Sets(t) {
		t.Run(set.Name, func(t *testing.T) {
			dump := set.Path(t, "oom", "vmcore.elf")
			k := loadModel(t, set, dump)
			tr := &triage.Triage{K: k}
			var panicTask *kernel.Task
			for _, tk := range k.Tasks {
				if tk.Panic {
					panicTask = tk
				}
			}
			jiffies, err := k.Symbol("jiffies_64")
			if err != nil {
				t.Fatal(err)
			}
			jv, err := k.ReadU64(jiffies)
			if err != nil {
				t.Fatal(err)
			}
			cmds := []string{"info threads", "p jiffies_64", "p init_task.comm", "ptype /o struct list_head",
				fmt.Sprintf("p ((struct task_struct *)%#x)->comm", panicTask.Addr),
				fmt.Sprintf("p/x (long)&((struct task_struct *)0)->tasks"),
				"info symbol schedule"}
			for cpu := range k.CPUs {
				cmds = append(cmds, fmt.Sprintf("p ((struct rq *)((unsigned long)&runqueues + ((unsigned long *)&__per_cpu_offset)[%d]))->curr->comm", cpu))
			}
			out := gdbNoFile(t, dump, cmds)
			threads := parseThreads(out)
			// Then every thread's backtrace, by its gdb thread number.
			var bts []string
			for _, th := range threads {
				bts = append(bts, fmt.Sprintf("echo == bt %s\\n", th.task), fmt.Sprintf("thread apply %d bt", th.num))
			}
			out += gdbNoFile(t, dump, bts)
			if len(threads) != len(k.Tasks) {
				t.Errorf("%d threads, the model has %d tasks", len(threads), len(k.Tasks))
			}
			for _, want := range []string{
				fmt.Sprintf("$1 = %d", jv),
				`$2 = "swapper/0`,
				"/* offset      |    size */  type = struct list_head {",
				fmt.Sprintf(`$3 = "%s`, panicTask.Comm),
				"schedule in section .text",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("gdb output lacks %q:\n%s", want, tail(out, 60))
				}
			}
			off, _ := k.Types.Offset("task_struct", "tasks")
			if !strings.Contains(out, fmt.Sprintf("$4 = %#x", off)) {
				t.Errorf("offsetof(task_struct, tasks) is not %#x:\n%s", off, grepLines(out, "$4"))
			}
			for i, c := range k.CPUs {
				var cur *kernel.Task
				for _, tk := range k.Tasks {
					if tk.OnCPU == c {
						cur = tk
					}
				}
				if cur == nil {
					continue
				}
				if !regexp.MustCompile(fmt.Sprintf(`\$%d = "%s\\000`, 5+i, regexp.QuoteMeta(cur.Comm))).MatchString(out) {
					t.Errorf("CPU %d: runqueues' curr is not %q:\n%s", i, cur.Comm, grepLines(out, fmt.Sprintf("$%d ", 5+i)))
				}
			}
			// Every task's gdb frames name the model's functions (read
			// with the vmlinux), the panicking one's included.
			compared := 0
			all, err := tr.BT(true, nil)
			if err != nil {
				t.Fatal(err)
			}
			byTask := map[string]triage.BTTask{}
			for _, b := range all {
				byTask[b.Task] = b
			}
			// A name gdb takes from kallsyms may be a label inside the
			// function the vmlinux's symbol table names (kallsyms keeps
			// secondary_startup_64_no_verify, an untyped label), or
			// another name at the same address (a system call's
			// __ia32_sys_ and __x64_sys_ aliases): the same frame if it
			// lies between that function and the pc.
			same := func(got, want string, pc string) bool {
				if got == want {
					return true
				}
				ga, err1 := k.Symbol(got)
				wa, err2 := k.Symbol(want)
				p, err3 := strconv.ParseUint(pc, 16, 64)
				return err1 == nil && err2 == nil && err3 == nil && ga >= wa && ga <= p
			}
			for _, tk := range k.Tasks {
				task := fmt.Sprintf("%#x", tk.Addr)
				i := strings.Index(out, "== bt "+task+"\n")
				if i < 0 {
					t.Errorf("no backtrace of task %s (pid %d)", task, tk.PID)
					continue
				}
				rest := out[i+1:]
				if j := strings.Index(rest, "== bt "); j >= 0 {
					rest = rest[:j]
				}
				got := frameFuncs(rest)
				var want, pcs []string
				for _, f := range byTask[fmt.Sprintf("%x", tk.Addr)].Frames {
					fn := strings.SplitN(f.Function, "+", 2)[0]
					if f.User || f.Kind != "call" || strings.HasPrefix(fn, "?") || isEntryCode(fn) || strings.HasPrefix(fn, "ret_from_fork") {
						break
					}
					// gdb names gcc's split-off parts func[cold].
					want = append(want, strings.Replace(fn, ".cold", "[cold]", 1))
					pcs = append(pcs, f.PC)
				}
				if len(want) == 0 {
					continue
				}
				compared++
				ok := len(got) >= len(want)
				for i := 0; ok && i < len(want); i++ {
					ok = same(got[i], want[i], pcs[i])
				}
				if !ok {
					t.Errorf("task %s pid %d%s: gdb frames %v, the model's %v", task, tk.PID, map[bool]string{true: " (panicking)"}[tk.Panic], got, want)
				}
			}
			if compared < len(k.Tasks)/2 {
				t.Errorf("only %d of %d tasks had a backtrace to compare", compared, len(k.Tasks))
			}
		})
	}
}

// loadModel reads the dump with the set's vmlinux: the reference.
func loadModel(t *testing.T, set fixtures.Set, dump string) *kernel.Kernel {
	t.Helper()
	k, _, closeAll, err := openKernel(set.Path(t, "kernel", "vmlinux"), []string{dump}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	return k
}

// gdbNoFile runs gdb with no file at all against `serve --stdio DUMP`,
// with no vmlinux to be found (no debuginfod, an empty cache).
func gdbNoFile(t *testing.T, dump string, cmds []string) string {
	t.Helper()
	gdb := requireGDB(t)
	args := append([]string{"-q", "-batch", "-nx"}, gdbSlowServer...)
	args = append(args, "-ex", "set pagination off", "-ex", "set width 0", "-ex", "target remote | "+serverCmd(dump, nil))
	for _, c := range cmds {
		args = append(args, "-ex", c)
	}
	c := exec.Command(gdb, args...)
	c.Env = append(os.Environ(), "DEBUGINFOD_URLS=", "XDG_CACHE_HOME="+t.TempDir())
	b, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, tail(string(b), 40))
	}
	return string(b)
}

// The kernel's own gdb scripts (6.1's scripts/gdb, built by the fixtures)
// on the symbol object alone: the lx commands that need only symbols and
// types give the dump's answers, lx-dmesg included.
func TestGDBScriptsWithoutDebugInfo(t *testing.T) {
	set := fixtures.Sets(t)[0]
	dump := set.Path(t, "oom", "vmcore.elf")
	scripts := set.Path(t, "gdb-scripts", "vmlinux-gdb.py")
	k := loadModel(t, set, dump)
	out := gdbNoFile(t, dump, []string{"source " + scripts, "echo == ps\\n", "lx-ps", "echo == lsmod\\n", "lx-lsmod",
		"echo == version\\n", "lx-version", "echo == cpus\\n", "lx-cpus", "p $lx_current().comm", "lx-cmdline",
		"echo == dmesg\\n", "lx-dmesg", "echo == end\\n"})
	var panicTask, init *kernel.Task
	for _, tk := range k.Tasks {
		if tk.Panic {
			panicTask = tk
		}
		if tk.PID == 1 {
			init = tk
		}
	}
	banner, err := k.Symbol("linux_banner")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 512)
	if err := k.Read(b, banner); err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(b[:strings.IndexByte(string(b), 0)]))
	for _, tk := range []*kernel.Task{init, panicTask} {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%#x +%d +%s$`, tk.Addr, tk.PID, regexp.QuoteMeta(tk.Comm))).MatchString(out) {
			t.Errorf("lx-ps lacks pid %d %s at %#x", tk.PID, tk.Comm, tk.Addr)
		}
	}
	want := []string{
		version,
		"Online CPUs   : [0, 1]",
		fmt.Sprintf(`= "%s\000`, panicTask.Comm),
		"crashkernel=",
	}
	mods, err := k.Modules()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		want = append(want, fmt.Sprintf("%#x %s", m.Base, m.Name))
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in:\n%s", w, tail(out, 80))
		}
	}
	if strings.Contains(out, "Python Exception") {
		t.Errorf("a script failed:\n%s", grepLines(out, "Python"))
	}
	// lx-dmesg ('printk.c'::prb, a file-static the symbol object puts in
	// a unit of that name) prints the log as the kernel model reads it
	// (its timestamps round the microseconds where the kernel's cut
	// them: the text is compared).
	i, j := strings.Index(out, "== dmesg\n"), strings.Index(out, "== end\n")
	recs, err := k.Log()
	if i < 0 || j < i || err != nil || len(recs) < 10 {
		t.Fatalf("no lx-dmesg output (log: %d records, %v)", len(recs), err)
	}
	dmesg := out[i+len("== dmesg\n") : j]
	for _, r := range []kernel.LogRecord{recs[0], recs[len(recs)/2], recs[len(recs)-1]} {
		line := "] " + strings.SplitN(r.Text, "\n", 2)[0] + "\n"
		if !strings.Contains(dmesg, line) {
			t.Errorf("lx-dmesg lacks %q:\n%s", line, tail(dmesg, 10))
		}
	}
}

// The gdb wrapper with the dump alone and no vmlinux to be found runs gdb
// on the symbol object the server offers: with its frame filter, a
// sleeping task's backtrace is named.
func TestGDBWrapperWithoutDebugInfo(t *testing.T) {
	set := fixtures.Sets(t)[0]
	requireGDB(t)
	out, stderr, code := runCLIEnv(t, []string{"DEBUGINFOD_URLS=", "XDG_CACHE_HOME=" + t.TempDir()},
		"gdb", set.Path(t, "oom", "vmcore.elf"), "--", "-batch", "-ex", "p init_task.comm", "-ex", "thread apply all bt")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "gdb gets the dump's own kallsyms and BTF") {
		t.Errorf("no note on stderr: %s", stderr)
	}
	for _, w := range []string{`"swapper/0\000`, " in schedule ()", " in kthread ()"} {
		if !strings.Contains(out, w) {
			t.Errorf("no %q in:\n%s", w, tail(out, 40))
		}
	}
}

// A 4.18 dump with no vmlinux anywhere and no kallsyms in VMCOREINFO
// (before 6.0): served with what the dump itself says. gdb gets a thread
// per CPU, the panicking one selected under its pid and command (from the
// CPU's note and the kernel log) with its saved registers; `log` is the
// same as with the vmlinux (VMCOREINFO lays the ring out); what needs
// types says in one line that the vmlinux is needed.
func TestBareDumpWithoutVmlinux(t *testing.T) {
	set := fixtures.SetsWith418(t)[2]
	for _, scenario := range []string{"oom", "sysrq"} {
		t.Run(scenario, func(t *testing.T) {
			dump := set.Path(t, scenario, "vmcore.lzo")
			k := loadModel(t, set, dump)
			var panicTask *kernel.Task
			for _, tk := range k.Tasks {
				if tk.Panic {
					panicTask = tk
				}
			}
			if panicTask == nil || panicTask.OnCPU == nil {
				t.Fatal("the reference model has no panicking task on a CPU")
			}
			out := gdbNoFile(t, dump, []string{"info threads", "p/x $pc", "p/x $rsp"})
			// A CPU's thread without a task_struct says where its pid is from.
			cpuThread := regexp.MustCompile(`(?m)^(\*)?\s*\d+\s+Thread \d+ "([^"]*)" \(pid (\d+) \(from the CPU's note\) cpu (\d+) \[running\]( \[panic\])?`)
			var threads []gdbThread
			for _, m := range cpuThread.FindAllStringSubmatch(out, -1) {
				pid, _ := strconv.Atoi(m[3])
				cpu, _ := strconv.Atoi(m[4])
				threads = append(threads, gdbThread{name: m[2], pid: pid, cpu: cpu, selected: m[1] == "*", panic: m[5] != ""})
			}
			if len(threads) != len(k.CPUs) {
				t.Errorf("%d threads, want one per CPU (%d):\n%s", len(threads), len(k.CPUs), tail(out, 20))
			}
			var sel *gdbThread
			for i := range threads {
				if threads[i].selected {
					sel = &threads[i]
				}
			}
			if sel == nil || !sel.panic || sel.pid != int(panicTask.PID) || sel.name != panicTask.Comm || sel.cpu != panicTask.OnCPU.ID {
				t.Errorf("selected thread %+v, want the panicking pid %d %q on CPU %d:\n%s", sel, panicTask.PID, panicTask.Comm, panicTask.OnCPU.ID, tail(out, 20))
			}
			regs := panicTask.OnCPU.Regs
			for i, r := range []uint64{regs.Value(amd64.RIP), regs.Value(amd64.RSP)} {
				if want := fmt.Sprintf("$%d = %#x\n", i+1, r); !strings.Contains(out, want) {
					t.Errorf("gdb lacks %q:\n%s", want, tail(out, 10))
				}
			}
			env := []string{"DEBUGINFOD_URLS=", "XDG_CACHE_HOME=" + t.TempDir()}
			bare, stderr, code := runCLIEnv(t, env, "log", dump)
			full, _, fcode := runCLIEnv(t, env, "log", set.Path(t, "kernel", "vmlinux"), dump)
			if code != 0 || fcode != 0 || bare != full || !strings.Contains(bare, "CPU: ") {
				t.Errorf("log without the vmlinux (exit %d, %s) differs from log with it (exit %d)", code, stderr, fcode)
			}
			_, stderr, code = runCLIEnv(t, env, "ps", dump)
			if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "give the vmlinux") || !strings.Contains(stderr, dump) {
				t.Errorf("ps without types: exit %d, want one line naming the dump and the vmlinux: %q", code, stderr)
			}
		})
	}
}
