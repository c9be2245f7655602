package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// maxReadLen bounds one `read`: it is for inspecting memory, not for
// copying RAM out of a dump.
const maxReadLen = 1 << 30

func newReadCmd() *cobra.Command {
	var phys, asHex bool
	cmd := &cobra.Command{
		Use:   "read [--phys] [--hex] VMCORE... ADDR LEN",
		Short: "Write the bytes at a kernel virtual (or physical) address to stdout",
		Long: `read translates ADDR through the dump's kernel page tables (or takes it as a
physical address with --phys) and writes LEN bytes, raw unless --hex is given.
An address that cannot be read ends with exit status 1 and one line saying
why: excluded by makedumpfile, not in the dump, or not mapped at a named
page-table level.`,
		Example: `  vmcore-gdbserver read --hex vmcore 0xffffffff9d800000 64
  vmcore-gdbserver read --phys vmcore.lzo 0x100000 4096 > page.bin`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			files := args[:len(args)-2]
			addr, err := strconv.ParseUint(args[len(args)-2], 0, 64)
			if err != nil {
				return fmt.Errorf("address %q: %v", args[len(args)-2], err)
			}
			length, err := strconv.ParseUint(args[len(args)-1], 0, 64)
			if err != nil || length > maxReadLen {
				return fmt.Errorf("length %q: want a number up to %d", args[len(args)-1], maxReadLen)
			}
			d, err := vmcore.Open(files...)
			if err != nil {
				return err
			}
			defer d.Close()
			readAt := d.ReadPhys
			if !phys {
				k, err := d.Kernel()
				if err != nil {
					return withFiles(err, files...)
				}
				readAt = k.Read
			}
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<16)
			defer out.Flush()
			var dumper *hexDumper
			if asHex {
				dumper = &hexDumper{w: out, addr: addr}
			}
			buf := make([]byte, 1<<16)
			for length > 0 {
				n := min(length, uint64(len(buf)))
				got, err := readAt(buf[:n], addr)
				if dumper != nil {
					dumper.write(buf[:got])
				} else {
					out.Write(buf[:got])
				}
				if err != nil {
					if dumper != nil {
						dumper.flush()
					}
					return withFiles(err, files...)
				}
				addr += n
				length -= n
			}
			if dumper != nil {
				dumper.flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&phys, "phys", false, "ADDR is a physical address")
	cmd.Flags().BoolVar(&asHex, "hex", false, "print a hex dump with addresses instead of raw bytes")
	return cmd
}

// hexDumper prints 16 bytes a line with their addresses.
type hexDumper struct {
	w    *bufio.Writer
	addr uint64
	line []byte
}

func (h *hexDumper) write(p []byte) {
	for _, b := range p {
		h.line = append(h.line, b)
		if len(h.line) == 16 {
			h.flush()
		}
	}
}

func (h *hexDumper) flush() {
	if len(h.line) == 0 {
		return
	}
	enc := hex.EncodeToString(h.line)
	fmt.Fprintf(h.w, "%016x:", h.addr)
	for i := 0; i < len(enc); i += 4 {
		fmt.Fprintf(h.w, " %s", enc[i:min(i+4, len(enc))])
	}
	width := len(h.line)/2*5 + len(h.line)%2*3
	fmt.Fprintf(h.w, "%*s  ", 40-width, "")
	for _, b := range h.line {
		if b < 0x20 || b > 0x7e {
			b = '.'
		}
		h.w.WriteByte(b)
	}
	h.w.WriteByte('\n')
	h.addr += uint64(len(h.line))
	h.line = h.line[:0]
}
