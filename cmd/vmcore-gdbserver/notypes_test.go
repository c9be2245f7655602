package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// TestGDBNoTypes serves a dump with no type information at all: the
// vmlinux stripped of DWARF by Debian's objcopy, its .BTF renamed away (objcopy
// cannot remove it: __start_BTF refers to it), and the dump's
// own BTF ruled out by forcing the DWARF path (symbols.TypesEnv). The
// server still serves one thread per CPU with its saved registers,
// memory and symbols; triage says what it cannot do, and the log,
// which needs no types, is read.
func TestGDBNoTypes(t *testing.T) {
	f := gdbFixtures[0]
	gdb := requireGDB(t)
	stripped := filepath.Join(t.TempDir(), "vmlinux")
	if out, err := exec.Command("objcopy", "--rename-section", ".BTF=.BTF.removed", "--strip-debug", f.vmlinux(t), stripped).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	t.Setenv(symbols.TypesEnv, "dwarf")

	// What the dump itself says: the CPUs' notes and jiffies_64.
	d, err := vmcore.Open(f.paths(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	info, err := d.VMCOREINFO()
	if err != nil {
		t.Fatal(err)
	}
	v, err := symbols.Open(stripped)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Types(); err == nil {
		t.Fatal("the stripped vmlinux still has type information")
	}
	addr, err := v.Address("jiffies_64", info.KernelOffset)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := d.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	var buf [8]byte
	if _, err := vm.Read(buf[:], addr); err != nil {
		t.Fatal(err)
	}
	jiffies := binary.LittleEndian.Uint64(buf[:])

	args := []string{"-q", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0", stripped,
		"-ex", "target remote | " + serverCmd(stripped, f.paths(t)),
		"-ex", "info threads", "-ex", "p jiffies_64", "-ex", "x/gx &jiffies_64",
		"-ex", "info registers rip", "-ex", "monitor ps", "-ex", "monitor log"}
	out := runCmd(t, gdb, args...)

	threads := regexp.MustCompile(`(?m)^(\*)?\s*\d+\s+Thread (\d+) "[^"]*" \((.*)\)\s*$`).FindAllStringSubmatch(out, -1)
	if len(threads) != len(d.PRStatus()) || len(threads) == 0 {
		t.Errorf("%d threads, want one per CPU's note (%d)\n%s", len(threads), len(d.PRStatus()), out)
	}
	var selPID int64 = -1
	for _, th := range threads {
		if th[1] == "*" {
			if !strings.Contains(th[3], "[panic]") {
				t.Errorf("selected thread is not the panicking CPU: %s", th[0])
			}
			if m := regexp.MustCompile(`pid (\d+)`).FindStringSubmatch(th[3]); m != nil {
				selPID, _ = strconv.ParseInt(m[1], 10, 32)
			}
		}
	}
	if !regexp.MustCompile(`'jiffies_64' has unknown type; cast it to its declared type`).MatchString(out) {
		t.Errorf("p jiffies_64 without types should ask for a cast:\n%s", out)
	}
	if want := fmt.Sprintf(":\t0x%016x", jiffies); !strings.Contains(out, want) {
		t.Errorf("x/gx &jiffies_64 lacks the dump's value %s:\n%s", want, out)
	}
	var rip uint64
	found := false
	for _, n := range d.PRStatus() {
		if int64(n.PID) == selPID {
			rip, found = n.Regs.Value(amd64.RIP), true
		}
	}
	if !found {
		t.Fatalf("no NT_PRSTATUS with the selected thread's pid %d\n%s", selPID, out)
	}
	if want := fmt.Sprintf("rip            0x%x", rip); !strings.Contains(out, want) {
		t.Errorf("info registers rip lacks %q:\n%s", want, out)
	}
	// ps needs types and says so; log needs none (VMCOREINFO lays the
	// ring out) and prints the kernel's own banner line.
	for _, want := range []string{"ps: cannot walk the task list", "no type information", "] Linux version "} {
		if !strings.Contains(out, want) {
			t.Errorf("monitor output lacks %q:\n%s", want, out)
		}
	}
	_ = os.Remove(stripped)
}
