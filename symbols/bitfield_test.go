package symbols

import (
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// BitField from the vmlinux's .BTF and from its DWARF, two independent
// encodings, agree on real kernel bitfields (those kmem -s reads among
// them), and say width 0 for a plain member.
func TestBitFieldsBTFMatchDWARF(t *testing.T) {
	for _, set := range fixtures.Sets(t) {
		t.Run(set.Name, func(t *testing.T) {
			v, err := Open(set.Path(t, "kernel", "vmlinux"))
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			b, err := v.BTF()
			if err != nil {
				t.Fatal(err)
			}
			d, err := v.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []struct{ s, path string }{
				{"slab", "inuse"}, {"slab", "objects"}, {"slab", "frozen"},
				{"task_struct", "sched_reset_on_fork"}, {"task_struct", "in_execve"},
				{"sk_buff", "cloned"}, {"inode", "i_state"},
			} {
				bo, bw, err1 := b.BitField(m.s, m.path)
				do, dw, err2 := d.BitField(m.s, m.path)
				if err1 != nil || err2 != nil {
					t.Errorf("%s.%s: BTF %v, DWARF %v", m.s, m.path, err1, err2)
					continue
				}
				if bo != do || bw != dw {
					t.Errorf("%s.%s: BTF bit %d width %d, DWARF bit %d width %d", m.s, m.path, bo, bw, do, dw)
				}
				if m.path == "i_state" && bw != 0 || m.path != "i_state" && bw == 0 {
					t.Errorf("%s.%s: width %d", m.s, m.path, bw)
				}
			}
		})
	}
}
