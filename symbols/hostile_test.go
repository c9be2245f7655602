package symbols

import (
	"encoding/binary"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A FIFO given as the vmlinux is refused at once, not waited on; so are
// other files that are not regular files or block devices.
func TestOpenNonRegular(t *testing.T) {
	fixtures.CheckRefusesNonRegular(t, "vmlinux", func(path string) (io.Closer, error) { return Open(path) })
}

// miniVmlinux writes an x86_64 ET_EXEC with a symbol table and a .BTF
// section whose header says btfSize bytes at btfOff.
func miniVmlinux(t *testing.T, btf []byte, btfOff, btfSize uint64) string {
	le := binary.LittleEndian
	shstr := []byte("\x00.symtab\x00.strtab\x00.shstrtab\x00.BTF\x00")
	strtab := []byte("\x00linux_banner\x00")
	sym := make([]byte, 48) // the null symbol, then linux_banner
	le.PutUint32(sym[24:], 1)
	sym[24+4] = 1 // STT_OBJECT
	var body []byte
	place := func(b []byte) uint64 {
		off := uint64(64 + len(body))
		body = append(body, b...)
		return off
	}
	shstrOff, strOff, symOff, realBTF := place(shstr), place(strtab), place(sym), place(btf)
	if btfOff == 0 {
		btfOff = realBTF
	}
	if btfSize == 0 {
		btfSize = uint64(len(btf))
	}
	shoff := uint64(64 + len(body))
	sh := func(name, typ uint32, off, size uint64, link, entsize uint32) []byte {
		b := make([]byte, 64)
		le.PutUint32(b[0:], name)
		le.PutUint32(b[4:], typ)
		le.PutUint64(b[24:], off)
		le.PutUint64(b[32:], size)
		le.PutUint32(b[40:], link)
		le.PutUint64(b[56:], uint64(entsize))
		return b
	}
	shdrs := append(make([]byte, 64), sh(1, 2, symOff, uint64(len(sym)), 2, 24)...) // .symtab
	le.PutUint32(shdrs[64+44:], 1)                                                  // sh_info: first global
	shdrs = append(shdrs, sh(9, 3, strOff, uint64(len(strtab)), 0, 0)...)           // .strtab
	shdrs = append(shdrs, sh(17, 3, shstrOff, uint64(len(shstr)), 0, 0)...)         // .shstrtab
	shdrs = append(shdrs, sh(27, 1, btfOff, btfSize, 0, 0)...)                      // .BTF
	eh := make([]byte, 64)
	copy(eh, "\x7fELF\x02\x01\x01")
	le.PutUint16(eh[16:], 2)  // ET_EXEC
	le.PutUint16(eh[18:], 62) // EM_X86_64
	le.PutUint32(eh[20:], 1)
	le.PutUint64(eh[40:], shoff)
	le.PutUint16(eh[52:], 64)
	le.PutUint16(eh[58:], 64)
	le.PutUint16(eh[60:], 5)
	le.PutUint16(eh[62:], 3)
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, append(append(eh, body...), shdrs...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Section sizes from the vmlinux's headers are checked against the file
// before anything is read or allocated.
func TestVmlinuxSectionSizes(t *testing.T) {
	good := sampleBTF()
	path := miniVmlinux(t, good, 0, 0)
	v, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := v.BTF(); err != nil {
		t.Fatalf("BTF: %v", err)
	} else if off, err := b.Offset("task_struct", "thread.sp"); err != nil || off != 40 {
		t.Errorf("thread.sp at %d, %v", off, err)
	}
	v.Close()
	for _, c := range []struct {
		name      string
		off, size uint64
		want      string
	}{
		{"huge", 0, 1 << 40, "runs past the end"},
		{"past-end", 1 << 30, 0, "runs past the end"},
		{"wraps", 1<<63 - 16, 64, "runs past the end"},
	} {
		path := miniVmlinux(t, good, c.off, c.size)
		v, err := Open(path)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var berr error
		if n := allocated(func() { _, berr = v.BTF() }); n > 1<<20 {
			t.Errorf("%s: reading .BTF allocated %d bytes", c.name, n)
		}
		if berr == nil || !strings.HasPrefix(berr.Error(), path+": section .BTF at offset") || !strings.Contains(berr.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %s, the section and %q", c.name, berr, path, c.want)
		}
		v.Close()
	}
}

// longNameKallsyms is a table whose every token expands to 255 bytes, so
// a one-byte name length decodes to 32 KB: beyond KSYM_NAME_LEN.
func longNameKallsyms() (flatMem, map[string]uint64) {
	rel := uint64(0xffffffff9c000000)
	m, vi := buildKallsyms([]string{"T_stext", "Tfoo"}, []uint64{rel + 0x1000, rel + 0x2000}, rel)
	tt := vi["kallsyms_token_table"] - m.base
	for i := 0; i < 256; i++ {
		binary.LittleEndian.PutUint16(m.data[vi["kallsyms_token_index"]-m.base+uint64(2*i):], 0)
	}
	for i := uint64(0); i < 255; i++ {
		m.data[tt+i] = 'A'
	}
	m.data[tt+255] = 0
	vi["_stext"] = rel + 0x1000
	return m, vi
}

func TestKallsymsHostile(t *testing.T) {
	m, vi := longNameKallsyms()
	_, err := LoadKallsyms(m, vi)
	if err == nil || !strings.Contains(err.Error(), "KSYM_NAME_LEN") || !strings.Contains(err.Error(), "at 0xffffffff82002000") {
		t.Errorf("long names: got %v, want KSYM_NAME_LEN and the entry's address", err)
	}
	rel := uint64(0xffffffff9c000000)
	m, vi = buildKallsyms([]string{"T_stext"}, []uint64{rel + 0x1000}, rel)
	vi["_stext"] = rel + 0x1000
	binary.LittleEndian.PutUint32(m.data[vi["kallsyms_num_syms"]-m.base:], 0xffffffff)
	if _, err := LoadKallsyms(m, vi); err == nil || !strings.Contains(err.Error(), "kallsyms_num_syms at 0xffffffff82000a00") {
		t.Errorf("num_syms 0xffffffff: %v", err)
	}
	// More names than memory holds: the entry and its address.
	binary.LittleEndian.PutUint32(m.data[vi["kallsyms_num_syms"]-m.base:], 100000)
	if _, err := LoadKallsyms(m, vi); err == nil || !strings.Contains(err.Error(), "kallsyms_names entry") || !strings.Contains(err.Error(), "at 0x") {
		t.Errorf("names past memory: %v", err)
	}
}
