package kernel

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// Every line the crashed kernel printed on its serial console is in the
// log read from the dump, in order, with the same timestamp.
func TestLogMatchesConsole(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) { testLogMatchesConsole(t, set) })
	}
}

func testLogMatchesConsole(t *testing.T, set fixtures.Set) {
	data, err := os.ReadFile(set.Path(t, "oom", "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The console holds both kernels; the crashed one ends with its panic
	// trace, before the capture kernel's "Linux version".
	var want []string
	stamped := regexp.MustCompile(`^\[\s*\d+\.\d{6}\] `)
	seenPanic := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if seenPanic && strings.Contains(line, "Linux version") {
			break
		}
		if strings.Contains(line, "Kernel panic - not syncing") {
			seenPanic = true
		}
		if stamped.MatchString(line) {
			want = append(want, line)
		}
	}
	if !seenPanic || len(want) < 100 {
		t.Fatalf("console log: %d lines, panic %v", len(want), seenPanic)
	}
	for _, files := range [][]string{{"oom/vmcore.lzo"}, {"oom/vmcore.elf"}} {
		k := loadIn(t, set, files...)
		recs, err := k.Log()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, strings.Split(r.String(), "\n")...)
		}
		j := 0
		for _, g := range got {
			if j < len(want) && g == want[j] {
				j++
			}
		}
		if j != len(want) {
			t.Fatalf("%s: console line %d not in the log in order: %q\n(log has %d lines)", files[0], j, want[j], len(got))
		}
		t.Logf("%s: all %d console lines in a log of %d records", files[0], len(want), len(recs))
	}
}
