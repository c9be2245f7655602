package gdbstub

import (
	"encoding/xml"
	"strings"
	"testing"
)

// Whatever the bytes (a comm or a file name is any bytes), the escaped
// text is well-formed XML 1.0 in an attribute and in character data, and
// text XML can hold comes back unchanged.
func TestEscapeXML(t *testing.T) {
	var all strings.Builder
	for i := 0; i < 256; i++ {
		all.WriteByte(byte(i))
	}
	cases := []string{"", "plain", `a<b>&"c'`, "tab\tnl\ncr\r", "\x1b[31m\x00\x01\x7f", all.String(), "\xff\xfe", "\ufffd\ufffe\uffff", "é漢"}
	for _, s := range cases {
		e := EscapeXML(s)
		doc := `<t n="` + e + `">` + e + `</t>`
		var v struct {
			N    string `xml:"n,attr"`
			Text string `xml:",chardata"`
		}
		if err := xml.Unmarshal([]byte(doc), &v); err != nil {
			t.Errorf("%q: %v\n%s", s, err, doc)
			continue
		}
		if v.N != v.Text {
			t.Errorf("%q: attribute %q, text %q", s, v.N, v.Text)
		}
		if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r >= 0xfffd }) && v.N != s {
			t.Errorf("%q came back as %q", s, v.N)
		}
	}
	if got := EscapeXML("a\x1bb\x00"); got != `a\x1bb\x00` {
		t.Errorf("controls: %q", got)
	}
}
