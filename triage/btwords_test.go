package triage

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// crashBT runs Debian's crash (8.0.2) on a fixture and returns its output
// for the commands (it reads 4.18 right; newer layouts it does not know).
func crashBT(t *testing.T, set fixtures.Set, dump string, cmds ...string) string {
	t.Helper()
	bin, err := exec.LookPath("crash")
	if err != nil {
		t.Fatal("crash is required (Debian package crash, installed by make fixtures): ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, "-s", set.Path(t, "kernel", "vmlinux"), set.Path(t, strings.Split(dump, "/")...))
	c.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\nquit\n")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("crash: %v\n%s", err, out)
	}
	return string(out)
}

var (
	crashFrame = regexp.MustCompile(`^ ?#(\d+) +\[([0-9a-f]+)\] (\S+) at ([0-9a-f]+)`)
	crashWords = regexp.MustCompile(`^    ([0-9a-f]+): (.*)$`)
	hexWord    = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// crashBlocks maps the address of each frame's first stack word to the
// frame's words (values or symbols, as crash printed them).
func crashBlocks(out string) map[string][]string {
	blocks := map[string][]string{}
	var cur []string
	var first string
	flush := func() {
		if first != "" {
			blocks[first] = cur
		}
		first, cur = "", nil
	}
	for _, line := range strings.Split(out, "\n") {
		if crashFrame.MatchString(line) {
			flush()
			continue
		}
		m := crashWords.FindStringSubmatch(line)
		if m == nil {
			if strings.TrimSpace(line) == "" || strings.Contains(line, "RIP:") {
				flush()
			}
			continue
		}
		if first == "" {
			first = m[1]
		}
		cur = append(cur, splitWords(m[2])...)
	}
	flush()
	return blocks
}

// splitWords splits crash's two columns: 16-character fields (symbols are
// padded to 16, longer ones run over and are followed by a space).
func splitWords(s string) []string { return strings.Fields(s) }

// bt -f and bt -F print, for every frame below the first, the same stack
// words (same addresses, values and symbols) as crash on the same dump,
// where crash reads the kernel right (the 4.18 fixtures; crash numbers a
// frame by the slot holding its return address, 8 below our frame SP, so
// our frame N's words are crash's frame N+1's when crash shows one frame
// more at the top).
func TestBTWordsMatchCrash(t *testing.T) {
	set := fixtures.SetsWith418(t)[2]
	for _, dump := range []string{"oom/vmcore.elf", "sysrq/vmcore.elf"} {
		t.Run(dump, func(t *testing.T) {
			tr := openWith(t, set, true, dump)
			var raw map[string][]string // bt -f's words, to check -F's symbols against
			for _, c := range []struct{ flag, crashCmd string }{{"-f", "bt -f"}, {"-F", "bt -F"}} {
				var buf bytes.Buffer
				if err := tr.Run([]string{"bt", c.flag}, &buf, false); err != nil {
					t.Fatal(err)
				}
				ours := crashBlocks(buf.String())
				theirs := crashBlocks(crashBT(t, set, dump, c.crashCmd))
				if c.flag == "-f" {
					raw = ours
				}
				if len(ours) < 3 || len(theirs) < 3 {
					t.Fatalf("%s: %d frames with words here, %d in crash:\n%s", c.flag, len(ours), len(theirs), buf.String())
				}
				matched := 0
				for first, words := range ours {
					want, ok := theirs[first]
					if !ok {
						continue
					}
					matched++
					if c.flag == "-F" {
						for i := range want {
							if i >= len(words) {
								break
							}
							// Two names for one address (a label inside a
							// function: entry_SYSCALL_64_after_hwframe):
							// crash's must name the same value.
							if want[i] != words[i] && !hexWord.MatchString(want[i]) && i < len(raw[first]) &&
								symbolValue(t, tr, want[i]) == raw[first][i] {
								want[i] = words[i]
							}
						}
					}
					if strings.Join(words, " ") != strings.Join(want, " ") {
						t.Errorf("%s: frame words from %s:\n ours  %v\n crash %v", c.flag, first, words, want)
					}
				}
				// Every frame but the topmost (crash starts one frame
				// higher, in machine_kexec or the like) lines up.
				if matched < len(ours)-1 {
					t.Errorf("%s: %d of our %d frames' words start where a crash frame's do", c.flag, matched, len(ours))
				}
				t.Logf("%s: %d frames' words equal crash's", c.flag, matched)
			}
		})
	}
}

// symbolValue is the address crash's "name+dec" names, as 16 hex digits.
func symbolValue(t *testing.T, tr *Triage, s string) string {
	name, off, _ := strings.Cut(s, "+")
	a, err := tr.K.Symbol(name)
	if err != nil {
		return ""
	}
	n, _ := strconv.ParseUint(off, 10, 64)
	return fmt.Sprintf("%016x", a+n)
}
