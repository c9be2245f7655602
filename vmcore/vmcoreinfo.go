package vmcore

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxVMCOREINFOSize bounds the note we accept; the kernel's own buffer is
// one page (VMCOREINFO_BYTES), so anything much larger is damage.
const MaxVMCOREINFOSize = 1 << 20

// VMCOREINFO is the kernel's self-description saved in the dump
// (kernel/vmcore_info.c, arch/x86/kernel/vmcore_info_64.c). Typed fields
// hold the keys address translation needs; every line, known or not, is
// kept in Keys/Values in file order.
type VMCOREINFO struct {
	OSRelease string // OSRELEASE
	BuildID   string // BUILD-ID, hex
	PageSize  uint64 // PAGESIZE

	KernelOffset    uint64 // KERNELOFFSET: KASLR slide of the kernel image
	HasKernelOffset bool
	PhysBase        uint64 // NUMBER(phys_base): physical load offset of the image
	HasPhysBase     bool
	CrashTime       int64 // CRASHTIME: seconds since the epoch; only kdump writes it
	HasCrashTime    bool
	PgtableL5       bool   // NUMBER(pgtable_l5_enabled)
	HasPgtableL5    bool   // the key was present
	SMEMask         uint64 // NUMBER(sme_mask): AMD memory-encryption bit(s) in PTEs

	Symbols map[string]uint64 // SYMBOL(name)=hex runtime address
	Numbers map[string]int64  // NUMBER(name)=value
	Offsets map[string]uint64 // OFFSET(struct.member)=decimal
	Sizes   map[string]uint64 // SIZE(type)=decimal
	Lengths map[string]uint64 // LENGTH(name)=decimal
	Keys    []string          // every key in file order
	Values  map[string]string // every key's raw value
}

// Symbol returns SYMBOL(name).
func (v *VMCOREINFO) Symbol(name string) (uint64, bool) {
	a, ok := v.Symbols[name]
	return a, ok
}

// Number returns NUMBER(name).
func (v *VMCOREINFO) Number(name string) (int64, bool) {
	n, ok := v.Numbers[name]
	return n, ok
}

// VMCOREINFOError is a malformed value for a key whose type is known.
type VMCOREINFOError struct {
	Offset     int // of the line in the text
	Key, Value string
	Err        error
}

func (e *VMCOREINFOError) Error() string {
	return fmt.Sprintf("VMCOREINFO: offset %d: %s=%q: %v", e.Offset, e.Key, e.Value, e.Err)
}

func (e *VMCOREINFOError) Unwrap() error { return e.Err }

// ParseVMCOREINFO parses the text of a VMCOREINFO note. Lines it cannot
// understand are kept raw; only a value that is malformed for a key whose
// type is known is an error, reported with its byte offset in the text.
func ParseVMCOREINFO(data []byte) (*VMCOREINFO, error) {
	if len(data) > MaxVMCOREINFOSize {
		return nil, fmt.Errorf("VMCOREINFO: %d bytes is larger than the %d allowed", len(data), MaxVMCOREINFOSize)
	}
	v := &VMCOREINFO{
		Symbols: map[string]uint64{},
		Numbers: map[string]int64{},
		Offsets: map[string]uint64{},
		Sizes:   map[string]uint64{},
		Lengths: map[string]uint64{},
		Values:  map[string]string{},
	}
	text := string(data)
	// The note is NUL padded.
	if i := strings.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	off := 0
	for len(text) > 0 {
		line := text
		next := len(text)
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, next = text[:i], i+1
		}
		lineOff := off
		text = text[next:]
		off += next
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			continue // not KEY=VALUE: tolerate, as the kernel never writes it
		}
		key, val := line[:eq], line[eq+1:]
		if _, dup := v.Values[key]; !dup {
			v.Keys = append(v.Keys, key)
		}
		v.Values[key] = val
		if err := v.apply(key, val); err != nil {
			return nil, &VMCOREINFOError{Offset: lineOff, Key: key, Value: val, Err: err}
		}
	}
	return v, nil
}

func (v *VMCOREINFO) apply(key, val string) error {
	inner := func(prefix string) (string, bool) {
		if strings.HasPrefix(key, prefix+"(") && strings.HasSuffix(key, ")") {
			return key[len(prefix)+1 : len(key)-1], true
		}
		return "", false
	}
	switch key {
	case "OSRELEASE":
		v.OSRelease = val
		return nil
	case "BUILD-ID":
		v.BuildID = val
		return nil
	case "PAGESIZE":
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return err
		}
		if n == 0 || n&(n-1) != 0 || n > 1<<20 {
			return fmt.Errorf("page size %d is not a power of two up to 1 MiB", n)
		}
		v.PageSize = n
		return nil
	case "KERNELOFFSET":
		n, err := strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 64)
		if err != nil {
			return err
		}
		v.KernelOffset, v.HasKernelOffset = n, true
		return nil
	case "CRASHTIME":
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return err
		}
		v.CrashTime, v.HasCrashTime = n, true
		return nil
	}
	if name, ok := inner("SYMBOL"); ok {
		n, err := strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 64)
		if err != nil {
			return err
		}
		v.Symbols[name] = n
		return nil
	}
	if name, ok := inner("NUMBER"); ok {
		n, err := parseNumber(val)
		if err != nil {
			return err
		}
		v.Numbers[name] = n
		switch name {
		case "phys_base":
			v.PhysBase, v.HasPhysBase = uint64(n), true
		case "pgtable_l5_enabled":
			v.PgtableL5, v.HasPgtableL5 = n != 0, true
		case "sme_mask":
			v.SMEMask = uint64(n)
		}
		return nil
	}
	for _, p := range []struct {
		prefix string
		m      map[string]uint64
	}{{"OFFSET", v.Offsets}, {"SIZE", v.Sizes}, {"LENGTH", v.Lengths}} {
		if name, ok := inner(p.prefix); ok {
			n, err := strconv.ParseUint(val, 0, 64)
			if err != nil {
				return err
			}
			p.m[name] = n
			return nil
		}
	}
	return nil
}

// parseNumber reads NUMBER() values: decimal and signed in the generic
// macro, but some x86 keys are written in hex with 0x (VMALLOC_START).
func parseNumber(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		return n, nil
	}
	// Values above MaxInt64 printed as unsigned.
	u, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, err
	}
	return int64(u), nil
}
