package kernel

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/amd64"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/vmcore"
)

// fakeTypes answers from maps: "struct.member" offsets, struct sizes
// and "struct.member" array lengths.
type fakeTypes struct {
	symbols.NoTypes
	offsets, sizes, lens map[string]uint64
}

func (f fakeTypes) Offset(s, m string) (uint64, error) {
	if v, ok := f.offsets[s+"."+m]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("struct %s has no member %s", s, m)
}

func (f fakeTypes) Sizeof(s string) (uint64, error) {
	if v, ok := f.sizes[s]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("no struct %s", s)
}

func (f fakeTypes) ArrayLen(s, m string) (uint64, error) {
	if v, ok := f.lens[s+"."+m]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("struct %s has no array %s", s, m)
}

func TestPRStatusLayoutFromTypes(t *testing.T) {
	abi := vmcore.CorePRStatus()
	gregs := map[string]uint64{"elf_prstatus.pr_reg": amd64.UserRegsCount}
	for _, c := range []struct {
		name  string
		types symbols.Types
		want  vmcore.PRStatusLayout
		err   string
	}{
		{"no types", symbols.NoTypes{Reason: "test"}, abi, ""},
		{"types without elf_prstatus", fakeTypes{}, abi, ""},
		{"4.18: pr_pid in elf_prstatus", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.pr_pid": 32, "elf_prstatus.pr_reg": 112},
			sizes:   map[string]uint64{"elf_prstatus": 336}, lens: gregs}, abi, ""},
		{"newer: pr_pid in elf_prstatus_common", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.common.pr_pid": 32, "elf_prstatus.pr_reg": 112},
			sizes:   map[string]uint64{"elf_prstatus": 336}, lens: gregs}, abi, ""},
		{"another layout", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.common.pr_pid": 8, "elf_prstatus.pr_reg": 40},
			sizes:   map[string]uint64{"elf_prstatus": 264}, lens: gregs}, vmcore.PRStatusLayout{PIDOff: 8, RegOff: 40, Size: 264}, ""},
		{"no pr_pid", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.pr_reg": 112},
			sizes:   map[string]uint64{"elf_prstatus": 336}, lens: gregs}, abi, "neither pr_pid nor common.pr_pid"},
		{"pr_reg not a user_regs_struct", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.pr_pid": 32, "elf_prstatus.pr_reg": 112},
			sizes:   map[string]uint64{"elf_prstatus": 336}, lens: map[string]uint64{"elf_prstatus.pr_reg": 17}}, abi, "elf_prstatus.pr_reg has 17 elements, not 27 to 27"},
		{"pr_reg past the end", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.pr_pid": 32, "elf_prstatus.pr_reg": 200},
			sizes:   map[string]uint64{"elf_prstatus": 336}, lens: gregs}, abi, "struct elf_prstatus of 336 bytes cannot hold pr_pid at 32 and pr_reg at 200"},
		{"huge elf_prstatus", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.pr_pid": 32, "elf_prstatus.pr_reg": 112},
			sizes:   map[string]uint64{"elf_prstatus": 1 << 40}, lens: gregs}, abi, "struct elf_prstatus of 1099511627776 bytes, more than 4096"},
		{"pr_reg offset overflows", fakeTypes{
			offsets: map[string]uint64{"elf_prstatus.pr_pid": 32, "elf_prstatus.pr_reg": 1<<64 - 8},
			sizes:   map[string]uint64{"elf_prstatus": 336}, lens: gregs}, abi, "cannot hold pr_pid at 32 and pr_reg at 18446744073709551608"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := &Kernel{Types: c.types}
			l, err := k.prstatusLayout()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || l != c.want {
				t.Fatalf("layout %+v, %v; want %+v", l, err, c.want)
			}
		})
	}
}

// The kernels' type information lays struct elf_prstatus out as the
// core-file ABI does, and the registers read from crash_notes are the
// ones /proc/vmcore's notes hold for the same pid.
func TestCrashNotesMatchNotes(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			k := loadIn(t, set, "oom/vmcore.lzo")
			l, err := k.prstatusLayout()
			if err != nil || l != vmcore.CorePRStatus() {
				t.Fatalf("elf_prstatus from %v: %+v, %v; want the ABI's %+v", k.Types, l, err, vmcore.CorePRStatus())
			}
			if _, err := k.Types.Sizeof("elf_prstatus"); err != nil {
				t.Errorf("the types have no elf_prstatus (%v): the ABI fallback was tested instead", err)
			}
			byPID := map[int32]amd64.Regs{}
			for _, n := range k.Dump.PRStatus() {
				byPID[n.PID] = n.Regs
			}
			matched := 0
			for _, c := range k.CPUs {
				if c.RegsSource != "crash_notes" {
					t.Fatalf("CPU %d registers from %s", c.ID, c.RegsSource)
				}
				want, ok := byPID[c.NotePID]
				if !ok || c.NotePID == 0 {
					continue // idle CPUs share pid 0
				}
				for _, reg := range amd64.All() {
					w, _ := want.Get(reg)
					got, known := c.Regs.Get(reg)
					if reg == amd64.GSBase {
						if known {
							t.Errorf("CPU %d: kdump's inactive gs_base claimed known", c.ID)
						}
						continue
					}
					if !known || got != w {
						t.Errorf("CPU %d %v: crash_notes 0x%x (%v), note 0x%x", c.ID, reg, got, known, w)
					}
				}
				matched++
			}
			if matched == 0 {
				t.Fatal("no CPU's crash_notes matched to a note by pid")
			}
		})
	}
}
