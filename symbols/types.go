package symbols

import (
	"errors"
	"fmt"
	"os"
)

// Types is what the kernel model asks of the kernel's type information:
// struct layouts by member name and enum values by name. Three sources
// implement it, tried in this order: the vmlinux's .BTF (*BTF), the
// vmlinux's DWARF (*DWARFTypes), the dumped kernel's own BTF (*BTF read
// from __start_BTF..__stop_BTF). NoTypes stands in when none exists.
//
// A path is dotted member names ("thread.sp", "core_layout.base"); each
// step may pass through anonymous structs and unions. Errors for a type
// or member the source does not have wrap ErrNoType.
//
// *BTF and *DWARFTypes also implement TypeLookup (whole types, for
// printing values and for whatis), found by a type assertion.
type Types interface {
	// Offset is the byte offset of a member path in a struct or union.
	Offset(structName, path string) (uint64, error)
	// Sizeof is the size in bytes of a struct or union.
	Sizeof(structName string) (uint64, error)
	// ArrayLen is the element count of the array a member path names
	// (0 for a flexible array).
	ArrayLen(structName, path string) (uint64, error)
	// Enum returns the enumerators of a named enum.
	Enum(name string) (map[string]int64, error)
	// EnumValue finds an enumerator by its own name in any enum.
	EnumValue(enumerator string) (int64, error)
}

// BitFields is an optional part of Types (BTF and DWARF have it): where
// a member that is a bitfield lies, which Offset refuses to say in bytes.
type BitFields interface {
	// BitField is a member path's offset in bits from the struct's
	// start and its width in bits (0 for a member that is no bitfield).
	BitField(structName, path string) (bitOffset, bitSize uint64, err error)
}

// ErrNoTypeInfo says there is no type information at all: what needs a
// struct layout cannot be done.
var ErrNoTypeInfo = errors.New("no type information")

// NoTypes answers every question with ErrNoTypeInfo and the reason.
type NoTypes struct{ Reason string }

// Err is the error every question gets.
func (n NoTypes) Err() error { return fmt.Errorf("%w (%s)", ErrNoTypeInfo, n.Reason) }

func (n NoTypes) Offset(string, string) (uint64, error)   { return 0, n.Err() }
func (n NoTypes) Sizeof(string) (uint64, error)           { return 0, n.Err() }
func (n NoTypes) ArrayLen(string, string) (uint64, error) { return 0, n.Err() }
func (n NoTypes) Enum(string) (map[string]int64, error)   { return nil, n.Err() }
func (n NoTypes) EnumValue(string) (int64, error)         { return 0, n.Err() }
func (n NoTypes) String() string                          { return "no type information: " + n.Reason }

// TypesEnv is the hidden switch that picks the vmlinux's type source:
// "btf" uses only its .BTF, "dwarf" only its DWARF (so a kernel with BTF
// can be run as if it had none); empty or "auto" tries .BTF, then DWARF.
// It concerns the vmlinux only: a dump read without one has only its BTF.
const TypesEnv = "VMCORE_GDBSERVER_TYPES"

// TypesMode returns the switch's value, checked.
func TypesMode() (string, error) {
	switch m := os.Getenv(TypesEnv); m {
	case "", "auto":
		return "auto", nil
	case "btf", "dwarf":
		return m, nil
	default:
		return "", fmt.Errorf("%s=%q: want btf, dwarf or auto", TypesEnv, m)
	}
}

// Types returns the vmlinux's type information: its .BTF section, else
// its DWARF (TypesEnv can force either). The error says what is missing.
func (v *Vmlinux) Types() (Types, error) {
	mode, err := TypesMode()
	if err != nil {
		return nil, err
	}
	if mode != "dwarf" {
		b, err := v.BTF()
		if err == nil || mode == "btf" {
			if err != nil {
				return nil, err
			}
			return b, nil
		}
		if v.elf.Section(".BTF") != nil {
			return nil, err // a damaged .BTF is reported, not papered over
		}
	}
	d, derr := v.DWARF()
	if derr != nil {
		if mode == "dwarf" {
			return nil, derr
		}
		return nil, fmt.Errorf("%s: no .BTF section and no DWARF (.debug_info): the kernel was built without CONFIG_DEBUG_INFO_BTF and its debug information is stripped", v.path)
	}
	return d, nil
}

// TypesName says which source t is, for messages.
func TypesName(t Types) string {
	switch t := t.(type) {
	case *BTF:
		if t.origin != "" {
			return t.origin
		}
		return "BTF"
	case *DWARFTypes:
		return "DWARF (" + t.path + ")"
	case fmt.Stringer:
		return t.String()
	}
	return fmt.Sprintf("%T", t)
}
