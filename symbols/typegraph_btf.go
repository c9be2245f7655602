package symbols

import "fmt"

// CType building from BTF. A struct, union or enum reached by
// containment is expanded; one reached through a pointer is not
// (Incomplete), which is what makes the tree finite. Every id is
// checked, and typeBudget bounds depth and size against hostile BTF.

// LookupType finds "struct NAME", "union NAME", "enum NAME" or a
// typedef or base type by name; a definition is preferred over a
// forward declaration.
func (b *BTF) LookupType(name string) (*CType, error) {
	id, err := b.TypeID(name)
	if err != nil {
		return nil, err
	}
	// A forward declaration alone has nothing to print.
	if t := &b.types[id]; t.kind == BTF_KIND_FWD || (t.kind == BTF_KIND_ENUM || t.kind == BTF_KIND_ENUM64) && t.vlen == 0 {
		return nil, fmt.Errorf("%w: %s has no %s (only its declaration)", ErrNoType, b.originName(), name)
	}
	return b.build(id, name)
}

// VariableType is the type of a BTF_KIND_VAR (BTF keeps the per-CPU
// variables; other globals only since pahole 1.26's global_var).
func (b *BTF) VariableType(name string) (*CType, error) {
	for _, id := range b.byName[name] {
		if b.types[id].kind == BTF_KIND_VAR {
			return b.build(b.types[id].sizeOrT, name)
		}
	}
	return nil, fmt.Errorf("%w: %s has no variable %s", ErrNoType, b.originName(), name)
}

// FunctionType is the FUNC_PROTO of a BTF_KIND_FUNC, with its
// parameter names.
func (b *BTF) FunctionType(name string) (*CType, error) {
	for _, id := range b.byName[name] {
		if b.types[id].kind != BTF_KIND_FUNC {
			continue
		}
		t, err := b.build(b.types[id].sizeOrT, name)
		if err != nil {
			return nil, err
		}
		if t == nil || t.Kind != TypeFunction {
			return nil, fmt.Errorf("%s: function %s (type id %d) has no prototype", b.originName(), name, id)
		}
		return t, nil
	}
	return nil, fmt.Errorf("%w: %s has no function %s", ErrNoType, b.originName(), name)
}

func (b *BTF) originName() string {
	if b.origin != "" {
		return b.origin
	}
	return "BTF"
}

func (b *BTF) build(id uint32, what string) (*CType, error) {
	bb := &btfBuild{b: b, budget: typeBudget{what: what}}
	return bb.ctype(id, 0, false)
}

type btfBuild struct {
	b      *BTF
	budget typeBudget
}

// ctype makes the CType of id; nil is void. shallow: reached through a
// pointer, so struct, union and enum bodies are left out.
func (bb *btfBuild) ctype(id uint32, depth int, shallow bool) (*CType, error) {
	if id == 0 {
		return nil, nil
	}
	b := bb.b
	if int(id) >= len(b.types) {
		return nil, fmt.Errorf("%s: %s: type id %d out of range (%d types)", b.originName(), bb.budget.what, id, len(b.types))
	}
	if err := bb.budget.take(depth); err != nil {
		return nil, fmt.Errorf("%s: %w", b.originName(), err)
	}
	bt := &b.types[id]
	t := &CType{Name: bt.name}
	switch bt.kind {
	case BTF_KIND_INT:
		t.Size = uint64(bt.sizeOrT)
		enc := bt.intEnc >> 24
		t.Signed = enc&btfIntSigned != 0
		switch {
		case enc&btfIntBool != 0:
			t.Kind = TypeBool
		case enc&btfIntChar != 0 || t.Size == 1 && (bt.name == "char" || bt.name == "signed char" || bt.name == "unsigned char"):
			t.Kind = TypeChar
		default:
			t.Kind = TypeInt
		}
	case BTF_KIND_FLOAT:
		t.Kind, t.Size, t.Signed = TypeFloat, uint64(bt.sizeOrT), true
	case BTF_KIND_PTR:
		t.Kind, t.Size = TypePointer, 8
		e, err := bb.ctype(bt.sizeOrT, depth+1, true)
		if err != nil {
			return nil, err
		}
		t.Elem = e
	case BTF_KIND_ARRAY:
		t.Kind, t.Len = TypeArray, uint64(bt.array[2])
		e, err := bb.ctype(bt.array[0], depth+1, shallow)
		if err != nil {
			return nil, err
		}
		t.Elem = e
		t.Size = t.Len * e.ByteSize()
		if es := e.ByteSize(); es != 0 && t.Len > ^uint64(0)/es {
			return nil, fmt.Errorf("%s: array type id %d: %d elements of %d bytes", b.originName(), id, t.Len, es)
		}
	case BTF_KIND_STRUCT, BTF_KIND_UNION:
		t.Kind, t.Size = TypeStruct, uint64(bt.sizeOrT)
		if bt.kind == BTF_KIND_UNION {
			t.Kind = TypeUnion
		}
		if shallow && bt.name != "" {
			t.Incomplete = true
			break
		}
		for _, m := range bt.members {
			mt, err := bb.ctype(m.typ, depth+1, false)
			if err != nil {
				return nil, err
			}
			cm := CMember{Name: m.name, BitOffset: uint64(m.bitOffset), BitSize: uint64(m.bitSize), Type: mt}
			if !bt.kflag {
				// Old-style bitfield: the INT's own offset and width.
				if r, err := b.resolve(m.typ); err == nil && r != 0 && b.types[r].kind == BTF_KIND_INT {
					enc := b.types[r].intEnc
					if bits := uint64(enc & 0xff); bits != 0 && bits != 8*uint64(b.types[r].sizeOrT) {
						cm.BitSize = bits
						cm.BitOffset += uint64(enc >> 16 & 0xff)
					}
				}
			}
			t.Members = append(t.Members, cm)
		}
	case BTF_KIND_ENUM, BTF_KIND_ENUM64:
		t.Kind, t.Size, t.Signed = TypeEnum, uint64(bt.sizeOrT), bt.kflag
		if shallow && bt.name != "" {
			t.Incomplete = true
			break
		}
		for _, e := range bt.enums {
			t.Enumerators = append(t.Enumerators, Enumerator{e.name, e.value})
		}
	case BTF_KIND_FWD:
		t.Kind, t.Incomplete = TypeStruct, true
		if bt.kflag {
			t.Kind = TypeUnion
		}
	case BTF_KIND_TYPEDEF:
		t.Kind = TypeTypedef
		e, err := bb.ctype(bt.sizeOrT, depth+1, shallow)
		if err != nil {
			return nil, err
		}
		t.Elem = e
		t.Size = e.ByteSize()
	case BTF_KIND_CONST, BTF_KIND_VOLATILE, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG:
		e, err := bb.ctype(bt.sizeOrT, depth+1, shallow)
		if err != nil {
			return nil, err
		}
		if e == nil {
			e = &CType{Kind: TypeVoid, Name: "void"}
		}
		switch bt.kind {
		case BTF_KIND_CONST:
			e.Const = true
		case BTF_KIND_VOLATILE:
			e.Volatile = true
		}
		return e, nil
	case BTF_KIND_FUNC_PROTO:
		t.Kind = TypeFunction
		ret, err := bb.ctype(bt.sizeOrT, depth+1, true)
		if err != nil {
			return nil, err
		}
		t.Elem = ret
		for i, p := range bt.params {
			if p.typ == 0 && i == len(bt.params)-1 {
				t.Variadic = true // the last "parameter" of type void is ...
				break
			}
			pt, err := bb.ctype(p.typ, depth+1, true)
			if err != nil {
				return nil, err
			}
			t.Params = append(t.Params, CParam{Name: p.name, Type: pt})
		}
	default:
		return nil, fmt.Errorf("%s: %s: type id %d (kind %d) is not a C type", b.originName(), bb.budget.what, id, bt.kind)
	}
	return t, nil
}
