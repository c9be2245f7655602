package symbols

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

func note(namesz uint32, name string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, [3]uint32{namesz, uint32(len(desc)), typ})
	b.WriteString(name)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(desc)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func TestGNUBuildID(t *testing.T) {
	id := []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	xen := note(4, "Xen\x00", 3, []byte{1, 2, 3, 4})
	for _, c := range []struct {
		name  string
		notes []byte
		want  string
	}{
		{"alone", note(4, "GNU\x00", NT_GNU_BUILD_ID, id), "deadbeef0102030405060708090a0b0c0d0e0f10"},
		{"after another owner's type 3", append(xen, note(4, "GNU\x00", NT_GNU_BUILD_ID, id[:16])...), "deadbeef0102030405060708090a0b0c"},
		{"wrong type", note(4, "GNU\x00", 1, id), ""},
		{"empty id", note(4, "GNU\x00", NT_GNU_BUILD_ID, nil), ""},
		{"cut short", note(4, "GNU\x00", NT_GNU_BUILD_ID, id)[:20], ""},
		{"huge descsz", append(note(4, "GNU\x00", NT_GNU_BUILD_ID, nil)[:4], 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0), ""},
		{"too long an id", note(4, "GNU\x00", NT_GNU_BUILD_ID, make([]byte, 200)), ""},
	} {
		got, ok := GNUBuildID(c.notes)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: got %q %v, want %q", c.name, got, ok, c.want)
		}
	}
}

// The build id of the fixture vmlinux file is the dump's (VMCOREINFO
// BUILD-ID is checked against it by kernel.Load; here the two readers of
// the file agree).
func TestELFBuildIDVmlinux(t *testing.T) {
	p := fixtures.Path(t, "kernel", "vmlinux")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ELFBuildID(f)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if want := v.BuildID(); got != want || len(got) != 40 {
		t.Fatalf("ELFBuildID %q, Vmlinux.BuildID %q", got, want)
	}
}

func FuzzBuildID(f *testing.F) {
	f.Add(note(4, "GNU\x00", NT_GNU_BUILD_ID, []byte("0123456789abcdefghij")))
	f.Add(append(note(4, "Xen\x00", 3, []byte{1, 2, 3, 4}), note(4, "GNU\x00", NT_GNU_BUILD_ID, []byte{1})...))
	f.Fuzz(func(t *testing.T, data []byte) {
		GNUBuildID(data)
		ELFBuildID(bytes.NewReader(data))
	})
}
