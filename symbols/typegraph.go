package symbols

import (
	"fmt"
	"strings"
)

// TypeKind is the kind of a C type in the printing model (CType).
type TypeKind uint8

const (
	TypeVoid TypeKind = iota
	TypeInt
	TypeBool
	TypeChar
	TypeFloat
	TypePointer
	TypeArray
	TypeStruct
	TypeUnion
	TypeEnum
	TypeTypedef
	TypeFunction
)

var typeKindNames = [...]string{"void", "int", "bool", "char", "float", "pointer", "array", "struct", "union", "enum", "typedef", "function"}

func (k TypeKind) String() string {
	if int(k) < len(typeKindNames) {
		return typeKindNames[k]
	}
	return fmt.Sprintf("kind%d", k)
}

// CType is a C type as a value printer and whatis need it, the same
// whichever source (BTF or DWARF) it was read from: a tree, not the
// source's graph. Struct and union bodies are expanded where a type
// contains them; through a pointer only the pointee's name is kept
// (Incomplete), so a tree is finite even for self-referential types.
type CType struct {
	Kind            TypeKind
	Name            string // tag, typedef or base type name; "" when anonymous
	Size            uint64 // bytes (arrays: Len elements; 0 when unknown)
	Signed          bool   // int, char, enum
	Const, Volatile bool
	// Members of a struct or union, in declaration order.
	Members []CMember
	// Elem is the pointee, array element, typedef target or function
	// return type; nil is void.
	Elem *CType
	// Len is an array's element count (0: flexible or unknown).
	Len         uint64
	Enumerators []Enumerator
	Params      []CParam // a function's parameters
	Variadic    bool
	// Incomplete says the struct, union or enum body was not read: a
	// declaration only, or reached through a pointer.
	Incomplete bool
}

// CMember is a member of a struct or union.
type CMember struct {
	Name      string // "" for an anonymous struct or union
	BitOffset uint64 // from the start of the enclosing struct
	BitSize   uint64 // a bitfield's width; 0 when not a bitfield
	Type      *CType
}

// Enumerator is one name of an enum.
type Enumerator struct {
	Name  string
	Value int64
}

// CParam is one parameter of a function type.
type CParam struct {
	Name string // "" when the source does not keep it
	Type *CType
}

// TypeLookup is the optional interface of a Types source that can give
// whole types, for printing values and describing names; *BTF and
// *DWARFTypes implement it. Errors for a name the source lacks wrap
// ErrNoType.
type TypeLookup interface {
	// LookupType finds "struct NAME", "union NAME", "enum NAME" or a
	// typedef or base type name.
	LookupType(name string) (*CType, error)
	// VariableType is the type of a global (or per-CPU) variable.
	VariableType(name string) (*CType, error)
	// FunctionType is a function's prototype (Kind TypeFunction), with
	// the parameter names the source keeps.
	FunctionType(name string) (*CType, error)
}

// Bounds on one type built from hostile data: nesting depth (declarators
// and contained structs) and the number of nodes made.
const (
	maxCTypeDepth = 48
	maxCTypeNodes = 1 << 17
)

// typeBudget counts the nodes of one build.
type typeBudget struct {
	nodes int
	what  string
}

func (b *typeBudget) take(depth int) error {
	if depth > maxCTypeDepth {
		return fmt.Errorf("%s: types nested more than %d deep", b.what, maxCTypeDepth)
	}
	if b.nodes++; b.nodes > maxCTypeNodes {
		return fmt.Errorf("%s: more than %d types in its definition", b.what, maxCTypeNodes)
	}
	return nil
}

// splitTypeName splits "struct NAME" (union, enum) into the keyword and
// the name; a bare name has keyword "".
func splitTypeName(name string) (kw, bare string) {
	name = strings.TrimSpace(name)
	for _, k := range []string{"struct", "union", "enum"} {
		if rest, ok := strings.CutPrefix(name, k+" "); ok {
			return k, strings.TrimSpace(rest)
		}
	}
	return "", name
}

// Resolved skips typedefs (and so their qualifiers): the type a value
// of t is laid out as.
func (t *CType) Resolved() *CType {
	for i := 0; t != nil && t.Kind == TypeTypedef && i < maxCTypeDepth; i++ {
		t = t.Elem
	}
	return t
}

// ByteSize is the size of a value of t (typedefs resolved).
func (t *CType) ByteSize() uint64 {
	r := t.Resolved()
	if r == nil {
		return 0
	}
	return r.Size
}

// String is t's C spelling: "struct list_head *", "unsigned long".
func (t *CType) String() string { return Declare(t, "") }

// Declare writes "TYPE NAME" in C's declarator syntax around name
// (pointers, arrays, function pointers), as gdb and crash print a
// declaration; whatis from BTF and from DWARF spell types alike.
func Declare(t *CType, name string) string { return declare(t, name, 0) }

func declare(t *CType, name string, depth int) string {
	sp := func(s string) string {
		if name == "" {
			return s
		}
		if strings.HasSuffix(s, "*") {
			return s + name
		}
		return s + " " + name
	}
	if t == nil {
		return sp("void")
	}
	if depth > maxCTypeDepth {
		return sp("?")
	}
	if t.Const || t.Volatile {
		q := ""
		if t.Const {
			q = "const "
		}
		if t.Volatile {
			q += "volatile "
		}
		u := *t
		u.Const, u.Volatile = false, false
		return q + declare(&u, name, depth+1)
	}
	switch t.Kind {
	case TypeVoid:
		return sp("void")
	case TypeInt, TypeBool, TypeChar, TypeFloat:
		n := t.Name
		if c, ok := cBaseNames[n]; ok {
			n = c
		}
		return sp(n)
	case TypeTypedef:
		return sp(t.Name)
	case TypeStruct:
		return sp("struct " + orAnon(t.Name))
	case TypeUnion:
		return sp("union " + orAnon(t.Name))
	case TypeEnum:
		return sp("enum " + orAnon(t.Name))
	case TypePointer:
		if t.Elem != nil && t.Elem.Kind == TypeFunction && !t.Elem.Const && !t.Elem.Volatile {
			return declareFunction(t.Elem, "(*"+name+")", depth+1)
		}
		if t.Elem == nil {
			return sp("void *")
		}
		return declare(t.Elem, "*"+name, depth+1)
	case TypeArray:
		dims := ""
		e := t
		for e != nil && e.Kind == TypeArray && !e.Const && !e.Volatile && depth < maxCTypeDepth {
			if e.Len == 0 {
				dims += "[]"
			} else {
				dims += fmt.Sprintf("[%d]", e.Len)
			}
			e, depth = e.Elem, depth+1
		}
		if strings.HasPrefix(name, "*") {
			name = "(" + name + ")"
		}
		return declare(e, name+dims, depth+1)
	case TypeFunction:
		return declareFunction(t, name, depth+1)
	}
	return sp("?")
}

func declareFunction(t *CType, name string, depth int) string {
	var params []string
	for _, p := range t.Params {
		params = append(params, declare(p.Type, "", depth))
	}
	if t.Variadic {
		params = append(params, "...")
	}
	if len(params) == 0 {
		params = []string{"void"}
	}
	return fmt.Sprintf("%s %s(%s)", declare(t.Elem, "", depth), name, strings.Join(params, ", "))
}

// DescribeType is whatis's answer for a struct, union or enum type, in
// the shape and spelling Vmlinux.Whatis gives from DWARF.
func DescribeType(t *CType) (*Description, error) {
	if t == nil || t.Kind != TypeStruct && t.Kind != TypeUnion && t.Kind != TypeEnum {
		return nil, fmt.Errorf("%s is not a struct, union or enum", Declare(t, ""))
	}
	desc := &Description{Kind: t.Kind.String(), Size: t.Size}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s {\n", t.Kind, orAnon(t.Name))
	desc.Members = describeBody(&b, t, 1, 0)
	b.WriteString("}")
	if desc.Size > 0 {
		fmt.Fprintf(&b, "\nSIZE: %d", desc.Size)
	}
	desc.Text = b.String()
	return desc, nil
}

// describeBody writes t's members (or enumerators) one level inside its
// braces; members of anonymous struct or union type are written in
// place, as crash and gdb's ptype do; only t's own members are returned.
func describeBody(b *strings.Builder, t *CType, indent, depth int) []Member {
	var members []Member
	pad := strings.Repeat("    ", indent)
	for _, e := range t.Enumerators {
		fmt.Fprintf(b, "%s%s = %d,\n", pad, e.Name, e.Value)
	}
	for _, m := range t.Members {
		mt := m.Type
		if mt != nil && (mt.Kind == TypeStruct || mt.Kind == TypeUnion) && mt.Name == "" && !mt.Const && !mt.Volatile && depth < maxTypeDepth {
			fmt.Fprintf(b, "%s%s {\n", pad, mt.Kind)
			describeBody(b, mt, indent+1, depth+1)
			if m.Name != "" {
				fmt.Fprintf(b, "%s} %s;\n", pad, m.Name)
			} else {
				fmt.Fprintf(b, "%s};\n", pad)
			}
			members = append(members, Member{mt.Kind.String() + " {...} " + m.Name, m.BitOffset / 8})
			continue
		}
		decl := Declare(mt, m.Name)
		if m.BitSize > 0 {
			decl += fmt.Sprintf(" : %d", m.BitSize)
		}
		members = append(members, Member{decl, m.BitOffset / 8})
		fmt.Fprintf(b, "%s%s;\n", pad, decl)
	}
	return members
}

// DescribeFunction is whatis's answer for a function of prototype t.
func DescribeFunction(name string, t *CType) *Description {
	desc := &Description{Kind: "function", Return: Declare(t.Elem, "")}
	var parts []string
	for _, p := range t.Params {
		desc.Params = append(desc.Params, Param{Type: Declare(p.Type, ""), Name: p.Name})
		parts = append(parts, Declare(p.Type, p.Name))
	}
	if t.Variadic {
		desc.Params = append(desc.Params, Param{Type: "..."})
		parts = append(parts, "...")
	}
	if len(parts) == 0 {
		parts = []string{"void"}
	}
	desc.Text = fmt.Sprintf("%s %s(%s);", desc.Return, name, strings.Join(parts, ", "))
	return desc
}

// DescribeVariable is whatis's answer for a variable of type t.
func DescribeVariable(name string, t *CType) *Description {
	return &Description{Kind: "variable", Text: Declare(t, name) + ";"}
}

// WhatisFrom describes name (as Vmlinux.Whatis takes it: "struct X",
// "union X", "enum X", a function, variable or typedef) from a
// TypeLookup; source names it in the error for a name it lacks.
func WhatisFrom(l TypeLookup, name, source string) (*Description, error) {
	kw, bare := splitTypeName(name)
	if kw != "" {
		t, err := l.LookupType(kw + " " + bare)
		if err != nil {
			return nil, err
		}
		return DescribeType(t)
	}
	if f, err := l.FunctionType(bare); err == nil {
		return DescribeFunction(bare, f), nil
	}
	if v, err := l.VariableType(bare); err == nil {
		return DescribeVariable(bare, v), nil
	}
	if t, err := l.LookupType(bare); err == nil && t.Kind == TypeTypedef {
		return &Description{Kind: "typedef", Text: "typedef " + Declare(t.Elem, bare) + ";"}, nil
	}
	return nil, fmt.Errorf("%w: %s has no function, variable or typedef %s", ErrNoType, source, bare)
}
