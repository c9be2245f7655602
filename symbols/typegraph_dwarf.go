package symbols

import (
	"debug/dwarf"
	"fmt"
)

// CType building from a vmlinux's DWARF, through the name index and the
// per-unit readers of DWARFTypes. As from BTF: bodies are expanded by
// containment only, and typeBudget bounds depth and size.

// LookupType finds "struct NAME", "union NAME", "enum NAME" or a
// typedef by name (the index's first complete definition).
func (t *DWARFTypes) LookupType(name string) (ct *CType, err error) {
	defer guard(t.path, &err)
	if err := t.index(); err != nil {
		return nil, err
	}
	kw, bare := splitTypeName(name)
	var off dwarf.Offset
	var ok bool
	switch kw {
	case "struct", "union":
		off, ok = t.ix.structs[bare]
	case "enum":
		off, ok = t.ix.enums[bare]
	default:
		off, ok = t.ix.typedef[bare]
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s has no %s", ErrNoType, TypesName(t), name)
	}
	db := &dwarfBuild{t: t, r: &dieCursor{t: t}, budget: typeBudget{what: name}}
	ct, err = db.ctype(off, 0, false)
	if err != nil {
		return nil, err
	}
	if kw != "" && (ct == nil || ct.Kind.String() != kw) {
		return nil, fmt.Errorf("%w: %s has no %s (the name is a %v)", ErrNoType, TypesName(t), name, ct.Kind)
	}
	return ct, nil
}

// symbolIndex builds (once, on the first question) the index of
// functions and variables.
func (t *DWARFTypes) symbolIndex() (*dwarfSymbolIndex, error) {
	if err := t.index(); err != nil {
		return nil, err
	}
	t.symOnce.Do(func() { t.syms, t.symErr = t.scan.buildSymbolIndex() })
	return t.syms, t.symErr
}

// VariableType is the type of a variable's first definition (else
// declaration).
func (t *DWARFTypes) VariableType(name string) (ct *CType, err error) {
	defer guard(t.path, &err)
	ix, err := t.symbolIndex()
	if err != nil {
		return nil, err
	}
	sd, ok := ix.vars[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no variable %s", ErrNoType, TypesName(t), name)
	}
	db := &dwarfBuild{t: t, r: &dieCursor{t: t}, budget: typeBudget{what: name}}
	e, err := t.entry(db.r, sd.off)
	if err != nil {
		return nil, err
	}
	typ, _ := e.Val(dwarf.AttrType).(dwarf.Offset)
	return db.ctype(typ, 0, false)
}

// FunctionType is the prototype of a function's first definition (else
// declaration), with its parameter names.
func (t *DWARFTypes) FunctionType(name string) (ct *CType, err error) {
	defer guard(t.path, &err)
	ix, err := t.symbolIndex()
	if err != nil {
		return nil, err
	}
	sd, ok := ix.funcs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no function %s", ErrNoType, TypesName(t), name)
	}
	db := &dwarfBuild{t: t, r: &dieCursor{t: t}, budget: typeBudget{what: name}}
	return db.ctype(sd.off, 0, false)
}

type dwarfBuild struct {
	t      *DWARFTypes
	r      *dieCursor
	budget typeBudget
}

// children reads the direct children of e (just read by the cursor).
func (db *dwarfBuild) children(e *dwarf.Entry) ([]*dwarf.Entry, error) {
	var cs []*dwarf.Entry
	if !e.Children {
		return nil, nil
	}
	for {
		c, err := db.r.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: .debug_info at 0x%x: %w", db.t.path, e.Offset, err)
		}
		if c == nil || c.Tag == 0 {
			return cs, nil
		}
		if c.Children {
			db.r.SkipChildren()
		}
		cs = append(cs, c)
		if len(cs) > maxCTypeNodes {
			return nil, fmt.Errorf("%s: .debug_info at 0x%x: more than %d children", db.t.path, e.Offset, maxCTypeNodes)
		}
	}
}

// ctype makes the CType of the DIE at off; nil is void. shallow: reached
// through a pointer, so named struct, union and enum bodies are left out.
func (db *dwarfBuild) ctype(off dwarf.Offset, depth int, shallow bool) (*CType, error) {
	if off == 0 {
		return nil, nil
	}
	if err := db.budget.take(depth); err != nil {
		return nil, fmt.Errorf("%s: %w", db.t.path, err)
	}
	e, err := db.t.entry(db.r, off)
	if err != nil {
		return nil, err
	}
	name, _ := e.Val(dwarf.AttrName).(string)
	ct := &CType{Name: name}
	if n, ok := constant(e.Val(dwarf.AttrByteSize)); ok && n >= 0 {
		ct.Size = uint64(n)
	}
	inner, _ := e.Val(dwarf.AttrType).(dwarf.Offset)
	isDecl, _ := e.Val(dwarf.AttrDeclaration).(bool)
	switch e.Tag {
	case dwarf.TagBaseType:
		enc, _ := constant(e.Val(dwarf.AttrEncoding))
		switch enc {
		case 0x02: // DW_ATE_boolean
			ct.Kind = TypeBool
		case 0x04: // DW_ATE_float
			ct.Kind, ct.Signed = TypeFloat, true
		case 0x06: // DW_ATE_signed_char
			ct.Kind, ct.Signed = TypeChar, true
		case 0x08: // DW_ATE_unsigned_char
			ct.Kind = TypeChar
		case 0x05: // DW_ATE_signed
			ct.Kind, ct.Signed = TypeInt, true
		default:
			ct.Kind = TypeInt
		}
	case dwarf.TagUnspecifiedType:
		ct.Kind = TypeVoid
	case dwarf.TagPointerType, dwarf.TagReferenceType:
		ct.Kind = TypePointer
		if ct.Size == 0 {
			ct.Size = 8
		}
		if ct.Elem, err = db.ctype(inner, depth+1, true); err != nil {
			return nil, err
		}
	case dwarf.TagConstType, dwarf.TagVolatileType:
		in, err := db.ctype(inner, depth+1, shallow)
		if err != nil {
			return nil, err
		}
		if in == nil {
			in = &CType{Kind: TypeVoid, Name: "void"}
		}
		if e.Tag == dwarf.TagConstType {
			in.Const = true
		} else {
			in.Volatile = true
		}
		return in, nil
	case dwarf.TagRestrictType, dwarf.TagAtomicType:
		return db.ctype(inner, depth+1, shallow)
	case dwarf.TagTypedef:
		ct.Kind = TypeTypedef
		if ct.Elem, err = db.ctype(inner, depth+1, shallow); err != nil {
			return nil, err
		}
		ct.Size = ct.Elem.ByteSize()
	case dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagClassType:
		ct.Kind = TypeStruct
		if e.Tag == dwarf.TagUnionType {
			ct.Kind = TypeUnion
		}
		if isDecl || shallow && name != "" {
			ct.Incomplete = true
			break
		}
		cs, err := db.children(e)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.Tag != dwarf.TagMember {
				continue
			}
			m := CMember{BitOffset: memberBitOffset(c)}
			m.Name, _ = c.Val(dwarf.AttrName).(string)
			if bs, ok := constant(c.Val(dwarf.AttrBitSize)); ok && bs > 0 {
				m.BitSize = uint64(bs)
			}
			mt, _ := c.Val(dwarf.AttrType).(dwarf.Offset)
			if m.Type, err = db.ctype(mt, depth+1, false); err != nil {
				return nil, err
			}
			ct.Members = append(ct.Members, m)
		}
	case dwarf.TagEnumerationType:
		ct.Kind = TypeEnum
		if inner != 0 {
			if u, err := db.ctype(inner, depth+1, true); err == nil && u != nil {
				ct.Signed = u.Resolved().Signed
			}
		}
		if isDecl || shallow && name != "" {
			ct.Incomplete = true
			break
		}
		if _, err := db.t.entry(db.r, off); err != nil { // back to its children
			return nil, err
		}
		cs, err := db.children(e)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.Tag != dwarf.TagEnumerator {
				continue
			}
			n, _ := c.Val(dwarf.AttrName).(string)
			v, _ := constant(c.Val(dwarf.AttrConstValue))
			ct.Enumerators = append(ct.Enumerators, Enumerator{n, v})
		}
	case dwarf.TagArrayType:
		cs, err := db.children(e)
		if err != nil {
			return nil, err
		}
		var dims []uint64
		for _, c := range cs {
			if c.Tag != dwarf.TagSubrangeType {
				continue
			}
			var n uint64
			if cnt, ok := constant(c.Val(dwarf.AttrCount)); ok && cnt >= 0 {
				n = uint64(cnt)
			} else if ub, ok := constant(c.Val(dwarf.AttrUpperBound)); ok && ub >= 0 {
				n = uint64(ub) + 1
			}
			dims = append(dims, n)
		}
		if len(dims) == 0 {
			dims = []uint64{0}
		}
		elem, err := db.ctype(inner, depth+len(dims), shallow)
		if err != nil {
			return nil, err
		}
		for i := len(dims) - 1; i >= 0; i-- {
			es := elem.ByteSize()
			if es != 0 && dims[i] > ^uint64(0)/es {
				return nil, fmt.Errorf("%s: .debug_info at 0x%x: array of %d elements of %d bytes", db.t.path, off, dims[i], es)
			}
			elem = &CType{Kind: TypeArray, Len: dims[i], Elem: elem, Size: dims[i] * es}
		}
		return elem, nil
	case dwarf.TagSubroutineType, dwarf.TagSubprogram:
		ct.Kind = TypeFunction
		cs, err := db.children(e)
		if err != nil {
			return nil, err
		}
		if ct.Elem, err = db.ctype(inner, depth+1, true); err != nil {
			return nil, err
		}
		for _, c := range cs {
			switch c.Tag {
			case dwarf.TagFormalParameter:
				pt, _ := c.Val(dwarf.AttrType).(dwarf.Offset)
				p := CParam{}
				p.Name, _ = c.Val(dwarf.AttrName).(string)
				if p.Type, err = db.ctype(pt, depth+1, true); err != nil {
					return nil, err
				}
				ct.Params = append(ct.Params, p)
			case dwarf.TagUnspecifiedParameters:
				ct.Variadic = true
			}
		}
	default:
		return nil, fmt.Errorf("%s: .debug_info at 0x%x: %s is not a type", db.t.path, off, e.Tag)
	}
	return ct, nil
}
