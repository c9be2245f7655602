package gdbstub

import (
	"fmt"
	"strings"
)

// EscapeXML makes s safe as XML character data or a quoted attribute
// value: the one escaper for every document served to gdb (thread lists
// here, the library list beside this package). Control characters are
// written as character references, so attribute normalization cannot turn
// a newline in a file name into a space.
func EscapeXML(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case r == '"':
			b.WriteString("&quot;")
		case r < 0x20 || r == 0x7f || r == 0xfffd:
			fmt.Fprintf(&b, "&#x%x;", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
