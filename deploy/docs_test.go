package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docRef matches a code reference in docs/: `dir.Func`, `dir.Type`,
// `dir.(*Type).Method` or `dir.(Type).Method`, where dir is a package
// directory of this repository (services/…, pkg/…).
var docRef = regexp.MustCompile("`((?:services|pkg|cmd)/[a-z0-9_/]+)\\.(?:\\(\\*?([A-Za-z0-9_]+)\\)\\.)?([A-Za-z0-9_]+)`")

// goDecls lists the top-level names of a package directory: functions as
// "Name", methods as "Type.Name", types, variables and constants as "Name".
func goDecls(t *testing.T, dir string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(root, dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) == 0 {
					out[d.Name.Name] = true
					continue
				}
				typ := d.Recv.List[0].Type
				if s, ok := typ.(*ast.StarExpr); ok {
					typ = s.X
				}
				if g, ok := typ.(*ast.IndexExpr); ok {
					typ = g.X
				}
				if id, ok := typ.(*ast.Ident); ok {
					out[id.Name+"."+d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						out[s.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range s.Names {
							out[n.Name] = true
						}
					}
				}
			}
		}
	}
	return out
}

// TestDocsNameCodeThatExists: every function, method or type that a page
// of docs/ names in backticks (`services/delivery/internal/delivery.(*Dispatcher).Run`)
// exists, so the walk-throughs cannot drift from the code unnoticed.
func TestDocsNameCodeThatExists(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs pages found: %v", err)
	}
	decls := map[string]map[string]bool{}
	refs := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range docRef.FindAllStringSubmatch(string(b), -1) {
			dir, typ, name := m[1], m[2], m[3]
			if decls[dir] == nil {
				decls[dir] = goDecls(t, dir)
			}
			want := name
			if typ != "" {
				want = typ + "." + name
			}
			refs++
			if !decls[dir][want] {
				t.Errorf("%s names %s, which %s does not declare", filepath.Base(page), m[0], dir)
			}
		}
	}
	if refs < 10 {
		t.Errorf("docs/ name only %d pieces of code; the delivery walk-through should name the function at each step", refs)
	}
}
