package symbols

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound says the DWARF has no definition of that name.
var ErrNotFound = errors.New("not in the vmlinux's DWARF")

// Param is one parameter of a function prototype.
type Param struct {
	Type string `json:"type"`
	Name string `json:"name,omitempty"`
}

// Member is one member of a struct or union.
type Member struct {
	Decl   string `json:"declaration"` // "struct list_head *next"
	Offset uint64 `json:"offset"`
}

// Description is what whatis says about a name.
type Description struct {
	Kind string `json:"kind"` // function, variable, struct, union, enum, typedef
	// Text is the C declaration or definition, as crash's whatis prints it.
	Text    string   `json:"text"`
	Return  string   `json:"return,omitempty"`
	Params  []Param  `json:"params,omitempty"`
	Members []Member `json:"members,omitempty"`
	Size    uint64   `json:"size,omitempty"`
}

// maxTypeDepth bounds a type's declarator chain (pointers to arrays of
// typedefs...), against cycles in hostile DWARF.
const maxTypeDepth = 32

// Whatis describes a function, variable or (with "struct ", "union ",
// "enum " in front) a type, from the vmlinux's DWARF.
func (v *Vmlinux) Whatis(name string) (*Description, error) {
	d, err := v.dwarfData()
	if err != nil {
		return nil, err
	}
	v.lines.mu.Lock()
	defer v.lines.mu.Unlock()
	var tags []dwarf.Tag
	bare := name
	switch {
	case strings.HasPrefix(name, "struct "):
		tags, bare = []dwarf.Tag{dwarf.TagStructType}, strings.TrimPrefix(name, "struct ")
	case strings.HasPrefix(name, "union "):
		tags, bare = []dwarf.Tag{dwarf.TagUnionType}, strings.TrimPrefix(name, "union ")
	case strings.HasPrefix(name, "enum "):
		tags, bare = []dwarf.Tag{dwarf.TagEnumerationType}, strings.TrimPrefix(name, "enum ")
	default:
		tags = []dwarf.Tag{dwarf.TagSubprogram, dwarf.TagVariable, dwarf.TagTypedef}
	}
	bare = strings.TrimSpace(bare)
	e := findTopLevel(d, bare, tags)
	if e == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	f := typeFormatter{d: d}
	switch e.Tag {
	case dwarf.TagSubprogram:
		desc := &Description{Kind: "function", Return: "void"}
		if t, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
			desc.Return = f.declare(t, "", 0)
		}
		var parts []string
		f.children(e, func(c *dwarf.Entry) {
			switch c.Tag {
			case dwarf.TagFormalParameter:
				p := Param{Type: "?"}
				p.Name, _ = c.Val(dwarf.AttrName).(string)
				decl := "? " + p.Name
				if t, ok := c.Val(dwarf.AttrType).(dwarf.Offset); ok {
					p.Type, decl = f.declare(t, "", 0), f.declare(t, p.Name, 0)
				}
				desc.Params = append(desc.Params, p)
				parts = append(parts, decl)
			case dwarf.TagUnspecifiedParameters:
				parts = append(parts, "...")
				desc.Params = append(desc.Params, Param{Type: "..."})
			}
		})
		if len(parts) == 0 {
			parts = []string{"void"}
		}
		desc.Text = fmt.Sprintf("%s %s(%s);", desc.Return, bare, strings.Join(parts, ", "))
		return desc, nil
	case dwarf.TagVariable:
		t, _ := e.Val(dwarf.AttrType).(dwarf.Offset)
		return &Description{Kind: "variable", Text: f.declare(t, bare, 0) + ";"}, nil
	case dwarf.TagTypedef:
		t, _ := e.Val(dwarf.AttrType).(dwarf.Offset)
		return &Description{Kind: "typedef", Text: "typedef " + f.declare(t, bare, 0) + ";"}, nil
	}
	// struct, union, enum: the definition.
	kind := map[dwarf.Tag]string{dwarf.TagStructType: "struct", dwarf.TagUnionType: "union", dwarf.TagEnumerationType: "enum"}[e.Tag]
	desc := &Description{Kind: kind}
	if sz, ok := e.Val(dwarf.AttrByteSize).(int64); ok && sz > 0 {
		desc.Size = uint64(sz)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s {\n", kind, bare)
	desc.Members = f.body(&b, e, 1, 0)
	b.WriteString("}")
	if desc.Size > 0 {
		fmt.Fprintf(&b, "\nSIZE: %d", desc.Size)
	}
	desc.Text = b.String()
	return desc, nil
}

// body writes the members (or enumerators) of the struct, union or enum
// e, one level deeper than its braces; members of anonymous struct and
// union type are written out in place, as crash and gdb's ptype do.
func (f typeFormatter) body(b *strings.Builder, e *dwarf.Entry, indent, depth int) []Member {
	var members []Member
	pad := strings.Repeat("    ", indent)
	f.children(e, func(c *dwarf.Entry) {
		switch c.Tag {
		case dwarf.TagMember:
			n, _ := c.Val(dwarf.AttrName).(string)
			t, _ := c.Val(dwarf.AttrType).(dwarf.Offset)
			off := memberBitOffset(c) / 8 // a DWARF 5 bitfield has no DW_AT_data_member_location
			if te := f.entry(t); te != nil && depth < maxTypeDepth && (te.Tag == dwarf.TagStructType || te.Tag == dwarf.TagUnionType) && te.Val(dwarf.AttrName) == nil {
				kw := map[dwarf.Tag]string{dwarf.TagStructType: "struct", dwarf.TagUnionType: "union"}[te.Tag]
				fmt.Fprintf(b, "%s%s {\n", pad, kw)
				f.body(b, te, indent+1, depth+1)
				if n != "" {
					fmt.Fprintf(b, "%s} %s;\n", pad, n)
				} else {
					fmt.Fprintf(b, "%s};\n", pad)
				}
				members = append(members, Member{kw + " {...} " + n, off})
				return
			}
			decl := f.declare(t, n, 0)
			if bits, ok := c.Val(dwarf.AttrBitSize).(int64); ok {
				decl += fmt.Sprintf(" : %d", bits)
			}
			members = append(members, Member{decl, off})
			fmt.Fprintf(b, "%s%s;\n", pad, decl)
		case dwarf.TagEnumerator:
			n, _ := c.Val(dwarf.AttrName).(string)
			fmt.Fprintf(b, "%s%s = %v,\n", pad, n, c.Val(dwarf.AttrConstValue))
		}
	})
	return members
}

// findTopLevel finds the definition of name among the units' top-level
// DIEs (a declaration, or a struct without members, only if nothing
// defines it).
func findTopLevel(d *dwarf.Data, name string, tags []dwarf.Tag) *dwarf.Entry {
	var decl *dwarf.Entry
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			return decl
		}
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit || e.Tag == 0 {
			continue
		}
		if n, _ := e.Val(dwarf.AttrName).(string); n == name {
			for _, t := range tags {
				if e.Tag != t {
					continue
				}
				isDecl, _ := e.Val(dwarf.AttrDeclaration).(bool)
				if !isDecl && (t == dwarf.TagSubprogram || t == dwarf.TagVariable || t == dwarf.TagTypedef || e.Children) {
					return e
				}
				if decl == nil {
					decl = e
				}
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
}

// typeFormatter writes C declarations of DWARF types.
type typeFormatter struct{ d *dwarf.Data }

// children calls fn for each direct child of e.
func (f typeFormatter) children(e *dwarf.Entry, fn func(c *dwarf.Entry)) {
	if !e.Children {
		return
	}
	r := f.d.Reader()
	r.Seek(e.Offset)
	r.Next()
	for {
		c, err := r.Next()
		if err != nil || c == nil || c.Tag == 0 {
			return
		}
		if c.Children {
			r.SkipChildren()
		}
		fn(c)
	}
}

func (f typeFormatter) entry(off dwarf.Offset) *dwarf.Entry {
	r := f.d.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil {
		return nil
	}
	return e
}

// declare writes "TYPE NAME" for a type at off, C's declarator syntax
// around name (pointers, arrays, function pointers).
func (f typeFormatter) declare(off dwarf.Offset, name string, depth int) string {
	sp := func(s string) string {
		if name == "" {
			return s
		}
		if strings.HasSuffix(s, "*") {
			return s + name
		}
		return s + " " + name
	}
	if off == 0 {
		return sp("void")
	}
	e := f.entry(off)
	if e == nil || depth > maxTypeDepth {
		return sp("?")
	}
	n, _ := e.Val(dwarf.AttrName).(string)
	inner, _ := e.Val(dwarf.AttrType).(dwarf.Offset)
	switch e.Tag {
	case dwarf.TagBaseType:
		if c, ok := cBaseNames[n]; ok {
			n = c
		}
		return sp(n)
	case dwarf.TagTypedef:
		return sp(n)
	case dwarf.TagStructType:
		return sp("struct " + orAnon(n))
	case dwarf.TagUnionType:
		return sp("union " + orAnon(n))
	case dwarf.TagEnumerationType:
		return sp("enum " + orAnon(n))
	case dwarf.TagPointerType:
		if t := f.entry(inner); inner != 0 && t != nil && t.Tag == dwarf.TagSubroutineType {
			return f.function(t, "(*"+name+")", depth+1)
		}
		if inner == 0 {
			return sp("void *")
		}
		return f.declare(inner, "*"+name, depth+1)
	case dwarf.TagConstType:
		return "const " + f.declare(inner, name, depth+1)
	case dwarf.TagVolatileType:
		return "volatile " + f.declare(inner, name, depth+1)
	case dwarf.TagRestrictType:
		return f.declare(inner, name, depth+1)
	case dwarf.TagArrayType:
		dims := ""
		f.children(e, func(c *dwarf.Entry) {
			if c.Tag != dwarf.TagSubrangeType {
				return
			}
			switch {
			case c.Val(dwarf.AttrCount) != nil:
				dims += fmt.Sprintf("[%v]", c.Val(dwarf.AttrCount))
			case c.Val(dwarf.AttrUpperBound) != nil:
				if ub, ok := c.Val(dwarf.AttrUpperBound).(int64); ok {
					dims += fmt.Sprintf("[%d]", ub+1)
				} else {
					dims += "[]"
				}
			default:
				dims += "[]"
			}
		})
		if strings.HasPrefix(name, "*") {
			name = "(" + name + ")"
		}
		return f.declare(inner, name+dims, depth+1)
	case dwarf.TagSubroutineType:
		return f.function(e, name, depth+1)
	}
	return sp("?")
}

func (f typeFormatter) function(e *dwarf.Entry, name string, depth int) string {
	ret := "void"
	if t, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
		ret = f.declare(t, "", depth)
	}
	var params []string
	f.children(e, func(c *dwarf.Entry) {
		switch c.Tag {
		case dwarf.TagFormalParameter:
			t, _ := c.Val(dwarf.AttrType).(dwarf.Offset)
			params = append(params, f.declare(t, "", depth))
		case dwarf.TagUnspecifiedParameters:
			params = append(params, "...")
		}
	})
	if len(params) == 0 {
		params = []string{"void"}
	}
	return fmt.Sprintf("%s %s(%s)", ret, name, strings.Join(params, ", "))
}

// cBaseNames are C's usual spellings of gcc's DWARF base type names, as
// gdb and crash print them.
var cBaseNames = map[string]string{
	"long unsigned int":      "unsigned long",
	"long int":               "long",
	"long long unsigned int": "unsigned long long",
	"long long int":          "long long",
	"short unsigned int":     "unsigned short",
	"short int":              "short",
}

func orAnon(n string) string {
	if n == "" {
		return "{...}"
	}
	return n
}
