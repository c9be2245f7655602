package main

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Plain gdb's resume commands on a dump return at once, say why, and
// leave the pc and the selected thread where they were: a stop that
// gdb takes as "not there yet" would repeat the step forever.
func TestGDBResumeRefused(t *testing.T) {
	gdb := requireGDB(t)
	f := gdbFixtures[0]
	vmlinux := f.vmlinux(t)
	// Commands bound to the selected thread first; continue and advance
	// resume every thread, and gdb then follows the stop to the crash's.
	cmds := []string{"step", "next", "finish", "stepi", "nexti", "until", "reverse-step", "reverse-continue", "continue", "advance panic"}
	args := []string{"-q", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set width 0", vmlinux,
		"-ex", "target remote | " + serverCmd(vmlinux, f.paths(t), "--stats"),
		"-ex", "python import time", "-ex", "thread", "-ex", "thread 3", "-ex", "up 1"}
	for _, c := range cmds {
		args = append(args, "-ex", "echo ==CMD "+c+"==\\n", "-ex", "python t0 = time.time()", "-ex", c,
			"-ex", `python print("==TOOK %.3f" % (time.time() - t0))`, "-ex", "p/x $pc", "-ex", "thread")
	}
	// A loop never ends; the deadline turns it into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	outb, err := exec.CommandContext(ctx, gdb, args...).CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, tail(out, 40))
	}
	blocks := strings.Split(out, "==CMD ")
	if len(blocks) != len(cmds)+1 {
		t.Fatalf("gdb ran %d of %d commands:\n%s", len(blocks)-1, len(cmds), tail(out, 40))
	}
	// The thread selected on connect is the crashed one, on whichever CPU.
	crashed := regexp.MustCompile(`\[Current thread is (\d+) `).FindStringSubmatch(blocks[0])
	if crashed == nil {
		t.Fatalf("no current thread at connect:\n%s", tail(blocks[0], 20))
	}
	pc := regexp.MustCompile(`\$\d+ = (0x[0-9a-f]+)`)
	took := regexp.MustCompile(`==TOOK ([0-9.]+)`)
	var firstPC string
	for i, b := range blocks[1:] {
		c := cmds[i]
		m := took.FindStringSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no timing in\n%s", c, b)
		}
		if s, _ := strconv.ParseFloat(m[1], 64); s > 5 {
			t.Errorf("%s took %s s", c, m[1])
		}
		p := pc.FindStringSubmatch(b)
		if p == nil {
			t.Fatalf("%s: no pc in\n%s", c, b)
		}
		if firstPC == "" {
			firstPC = p[1]
		}
		if c == "advance panic" || c == "continue" {
			if !strings.Contains(b, "[Current thread is "+crashed[1]+" ") {
				t.Errorf("%s did not stop in the crashed thread: %q", c, grepLines(b, "Current thread"))
			}
		} else if p[1] != firstPC || !strings.Contains(b, "[Current thread is 3 ") {
			t.Errorf("%s moved: pc %s (first %s), thread %q", c, p[1], firstPC, grepLines(b, "Current thread"))
		}
		if strings.HasPrefix(c, "reverse-") {
			if !strings.Contains(b, "does not support this command") {
				t.Errorf("%s: no reason given:\n%s", c, b)
			}
			continue
		}
		if !strings.Contains(b, "it cannot run or step") || !strings.Contains(b, "received signal SIGINT") {
			t.Errorf("%s: not stopped at once with the reason:\n%s", c, b)
		}
	}
	// The session stayed short: a looping step sends thousands of packets.
	st := regexp.MustCompile(`stats: client \S+: (\d+) packets`).FindStringSubmatch(out)
	if st == nil {
		t.Fatalf("no session stats:\n%s", tail(out, 10))
	}
	if n, _ := strconv.Atoi(st[1]); n > 3000 {
		t.Errorf("%d packets for %d commands", n, len(cmds))
	}
}

// monitor output reaches gdb whole, with no "short write".
func TestGDBMonitorHelp(t *testing.T) {
	f := gdbFixtures[0]
	out := runGDB(t, f, "monitor help", "monitor")
	if strings.Contains(out, "short write") {
		t.Errorf("monitor printed a short write:\n%s", out)
	}
	if n := len(regexp.MustCompile(`(?m)^help +this list$`).FindAllString(out, -1)); n != 2 {
		t.Errorf("monitor help and a bare monitor printed the help list %d times, want 2:\n%s", n, out)
	}
}
