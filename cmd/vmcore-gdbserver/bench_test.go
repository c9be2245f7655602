package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// rspExchange sends one packet and returns the reply payload.
func rspExchange(w io.Writer, r *bufio.Reader, pkt string) (string, error) {
	var sum byte
	for i := 0; i < len(pkt); i++ {
		sum += pkt[i]
	}
	if _, err := fmt.Fprintf(w, "$%s#%02x", pkt, sum); err != nil {
		return "", err
	}
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '$' {
			break
		}
	}
	body, err := r.ReadString('#')
	if err != nil {
		return "", err
	}
	r.Discard(2)
	w.Write([]byte("+"))
	return strings.TrimSuffix(body, "#"), nil
}

// BenchmarkServeStartToThreadList: process start until the server has
// answered its first qXfer:threads:read (dump opened, vmlinux symbols and
// BTF loaded, every task list walked).
func BenchmarkServeStartToThreadList(b *testing.B) {
	for _, f := range gdbFixtures {
		b.Run(f.name, func(b *testing.B) {
			vmlinux := f.vmlinux(b)
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(cliBinary, append([]string{"serve", "--stdio", vmlinux}, f.paths(b)...)...)
				in, _ := cmd.StdinPipe()
				out, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				r := bufio.NewReader(out)
				if _, err := rspExchange(in, r, "qSupported:xmlRegisters=i386"); err != nil {
					b.Fatal(err)
				}
				reply, err := rspExchange(in, r, "qXfer:threads:read::0,fff0")
				if err != nil || !strings.Contains(reply, "<thread ") {
					b.Fatalf("threads: %q %v", reply, err)
				}
				rspExchange(in, r, "D")
				in.Close()
				cmd.Wait()
			}
		})
	}
}

// BenchmarkGDB times whole gdb 13 runs (process start to exit): `info
// threads`, and `thread apply all bt`.
func BenchmarkGDB(b *testing.B) {
	for _, f := range []gdbFixture{gdbFixtures[0], gdbFixtures[3]} {
		for _, c := range []struct{ name, cmd string }{{"info-threads", "info threads"}, {"thread-apply-all-bt", "thread apply all bt"}} {
			b.Run(f.name+"/"+c.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					runGDB(b, f, c.cmd)
				}
			})
		}
	}
}
