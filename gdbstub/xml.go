package gdbstub

import (
	"fmt"
	"strings"
)

// EscapeXML makes s safe as XML character data or a quoted attribute
// value: the one escaper for every document served to gdb (thread lists
// here, the library list beside this package). Tab, newline and carriage
// return are character references, so attribute normalization cannot turn
// a newline in a file name into a space. The other C0 controls and
// U+FFFE/U+FFFF cannot appear in XML 1.0 even as references (gdb's expat
// rejects the whole document, so one task named "\x1b" would hide every
// thread): they become the text \xHH.
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
		case r == '\t' || r == '\n' || r == '\r' || r == 0x7f || r == 0xfffd:
			fmt.Fprintf(&b, "&#x%x;", r)
		case r < 0x20:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == 0xfffe || r == 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
