package triage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// openFiles builds the triage of a vmlinux and dump given by path.
func openFiles(t *testing.T, vmlinux, dump string) *Triage {
	t.Helper()
	d, err := vmcore.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	v, err := symbols.Open(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	k, err := kernel.Load(d, v)
	if err != nil {
		t.Fatal(err)
	}
	return &Triage{K: k, Vmlinux: vmlinux, Dumps: []string{dump}}
}

// The BTF-less variant of the 6.1 oom fixture (nobtf/: no .BTF in the
// vmlinux, the dump's __start_BTF..__stop_BTF zeroed), with no switch
// set, loads its types from the vmlinux's DWARF and gives exactly the
// answers the BTF-ful oom fixture gives for the same crash.
func TestNoBTFSameAnswers(t *testing.T) {
	t.Setenv(symbols.TypesEnv, "") // not forced: make types-dwarf sets it
	vmlinux, dump := fixtures.NoBTF(t)

	// No BTF anywhere: not in the vmlinux, not in the dump.
	v, err := symbols.Open(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.BTF(); err == nil {
		t.Fatal("nobtf/vmlinux has BTF")
	}
	d, err := vmcore.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Alone, it loads with what needs no type, and says why there is none.
	if k, err := kernel.LoadFromDump(d); err != nil || k.HasTypes() || !strings.Contains(symbols.TypesName(k.Types), "the dumped kernel has no BTF") {
		t.Fatalf("nobtf/vmcore.lzo without a vmlinux: %v, want a model without types because the dumped kernel has no BTF", err)
	}

	with := openFiles(t, fixtures.Path(t, "kernel", "vmlinux"), fixtures.Path(t, "oom", "vmcore.lzo"))
	without := openFiles(t, vmlinux, dump)
	if b, ok := with.K.Types.(*symbols.BTF); !ok || !strings.Contains(symbols.TypesName(b), "kernel/vmlinux") {
		t.Fatalf("oom fixture types from %s, want the vmlinux's BTF", symbols.TypesName(with.K.Types))
	}
	if _, ok := without.K.Types.(*symbols.DWARFTypes); !ok {
		t.Fatalf("nobtf types from %s, want the vmlinux's DWARF", symbols.TypesName(without.K.Types))
	}
	if w := without.K.Warnings(); len(w) != len(with.K.Warnings()) {
		t.Errorf("warnings with DWARF %q, with BTF %q", w, with.K.Warnings())
	}

	// The same tasks, panicking task included.
	key := func(k *kernel.Kernel) (s []string, panicking string) {
		for _, task := range k.Tasks {
			line := fmt.Sprintf("%d %d %q %c cpu %d idle %v task %#x", task.PID, task.TGID, task.Comm, task.State, task.CPU, task.IsIdle, task.Addr)
			s = append(s, line)
			if task.Panic {
				panicking = line
			}
		}
		return s, panicking
	}
	a, pa := key(with.K)
	b, pb := key(without.K)
	if len(a) < 50 || pa == "" || !strings.Contains(pa, `"stress"`) {
		t.Fatalf("the oom fixture has %d tasks, panicking %q: want 50 or more and stress", len(a), pa)
	}
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("tasks differ:\nBTF:\n%s\nDWARF:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	if pa != pb {
		t.Errorf("panicking task %q with BTF, %q with DWARF", pa, pb)
	}

	// ps (RSS included), kmem -i, log, mod, bt, vm and files: the same
	// output, text and JSON.
	for _, cmd := range [][]string{{"ps"}, {"kmem", "-i"}, {"log"}, {"mod"}, {"bt"}, {"bt", "-a"}, {"vm"}, {"vm", "1"}, {"files"}, {"files", "1"}} {
		for _, asJSON := range []bool{false, true} {
			var x, y bytes.Buffer
			if err := with.Run(cmd, &x, asJSON); err != nil {
				t.Fatalf("%v with BTF: %v", cmd, err)
			}
			if err := without.Run(cmd, &y, asJSON); err != nil {
				t.Fatalf("%v with DWARF: %v", cmd, err)
			}
			if x.Len() < 100 {
				t.Fatalf("%v with BTF: only %q", cmd, x.String())
			}
			if x.String() != y.String() {
				t.Errorf("%v (json %v) differs:\nBTF:\n%s\nDWARF:\n%s", cmd, asJSON, tail(x.String()), tail(y.String()))
			}
		}
	}

	// The panicking task's frames, one by one, and some RSS that is not 0.
	ba, err := with.BT(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := without.BT(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ba) != 1 || len(bb) != 1 || len(ba[0].Frames) < 5 || ba[0].Stopped != "" {
		t.Fatalf("bt of the panicking task: %d and %d traces", len(ba), len(bb))
	}
	fa, fb := frameText(ba[0].Frames), frameText(bb[0].Frames)
	if !strings.Contains(fa, "out_of_memory") || fa != fb {
		t.Errorf("panicking task's frames:\nBTF:\n%s\nDWARF:\n%s", fa, fb)
	}
	psa, err := with.PS()
	if err != nil {
		t.Fatal(err)
	}
	psb, err := without.PS()
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(psa)
	jb, _ := json.Marshal(psb)
	if !bytes.Contains(ja, []byte(`"stress"`)) || !bytes.Equal(ja, jb) {
		t.Errorf("ps differs")
	}

	// sys: the same but for the vmlinux and dump names.
	sa, _ := with.Sys()
	sb, _ := without.Sys()
	sa.Kernel, sb.Kernel, sa.Dumpfiles, sb.Dumpfiles = "", "", nil, nil
	xa, _ := json.Marshal(sa)
	xb, _ := json.Marshal(sb)
	if sa.PanicPID == nil || string(xa) != string(xb) {
		t.Errorf("sys differs:\n%s\n%s", xa, xb)
	}
}

func frameText(frames []BTFrame) string {
	var s []string
	for _, f := range frames {
		b, _ := json.Marshal(f)
		s = append(s, string(b))
	}
	return strings.Join(s, "\n")
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}
