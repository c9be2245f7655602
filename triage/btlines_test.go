package triage

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/unwind"
)

var gdbInfoLine = regexp.MustCompile(`(?m)^Line (\d+) of "([^"]+)"\s+(?:starts at|is at) address (0x[0-9a-f]+)`)

// bt -l gives every kernel frame the line gdb's own line-table lookup
// gives for the same address (the call, one byte before a return
// address), and the outermost entry of each inline chain is the frame's
// own function; without the vmlinux it says lines need it.
func TestBTLines(t *testing.T) {
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Fatal("gdb is required: ", err)
	}
	sets := fixtures.SetsWith418(t)
	for _, set := range sets {
		t.Run(set.Name, func(t *testing.T) {
			tr := openWith(t, set, true, "oom/vmcore.elf")
			// Every task's frames (sleeping ones too), up to 150.
			all, err := tr.BTWith(BTOptions{All: true, Lines: true})
			if err != nil || len(all) < 10 {
				t.Fatal(err)
			}
			var frames []BTFrame
			for _, bt := range all {
				frames = append(frames, bt.Frames...)
			}
			if len(frames) > 150 {
				frames = frames[:150]
			}
			type q struct {
				level int
				addr  uint64
			}
			var qs []q
			args := []string{"-q", "-batch", "-nx", set.Path(t, "kernel", "vmlinux")}
			for i, f := range frames {
				if f.User || tr.K.SymbolName(mustHex(t, f.PC)) == "" {
					continue
				}
				if f.NoSource != "" || len(f.Source) == 0 {
					t.Errorf("frame %d %s: no source: %s", i, f.Function, f.NoSource)
					continue
				}
				pc := mustHex(t, f.PC)
				if f.Level > 0 && f.Kind == unwind.KindCall.String() {
					pc--
				}
				link := pc - tr.K.KASLR
				qs = append(qs, q{i, link})
				args = append(args, "-ex", fmt.Sprintf("info line *%#x", link))
				// The chain ends in the frame's function (.cold and
				// .constprop parts are the function's too).
				outer := f.Source[len(f.Source)-1]
				base := strings.SplitN(strings.SplitN(f.Function, "+", 2)[0], ".", 2)[0]
				if outer.Function != "" && outer.Function != base {
					t.Errorf("frame %d %s: inline chain ends in %q", f.Level, f.Function, outer.Function)
				}
			}
			if len(qs) < 50 {
				t.Fatalf("only %d frames to check", len(qs))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, gdb, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("gdb: %v\n%s", err, out)
			}
			ms := gdbInfoLine.FindAllStringSubmatch(string(out), -1)
			if len(ms) != len(qs) {
				t.Fatalf("gdb answered %d of %d info line queries:\n%s", len(ms), len(qs), out)
			}
			for i, m := range ms {
				f := frames[qs[i].level]
				got := f.Source[0]
				line, _ := strconv.Atoi(m[1])
				if got.Line != line || filepath.Base(got.File) != filepath.Base(m[2]) {
					t.Errorf("frame %d %s: ours %s:%d, gdb %s:%d", f.Level, f.Function, got.File, got.Line, m[2], line)
				}
			}
			t.Logf("%d frames' lines equal gdb's", len(ms))
		})
	}
	t.Run("no vmlinux", func(t *testing.T) {
		tr := openWith(t, sets[0], false, "oom/vmcore.lzo")
		bts, err := tr.BTWith(BTOptions{Lines: true})
		if err != nil || len(bts) != 1 || len(bts[0].Frames) == 0 {
			t.Fatal(err)
		}
		for _, f := range bts[0].Frames {
			if !f.User && !strings.Contains(f.NoSource, "need the vmlinux") {
				t.Errorf("frame %d: %q", f.Level, f.NoSource)
			}
		}
	})
}

func mustHex(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
