package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// The library never writes the process environment: os.Setenv from a Go
// thread calls C setenv, which races any getenv in the host's other threads.
// Settings reach the cloud SDKs through the environment the process started
// with (see provider.Spec.ProcessEnv), never by writing it.
func TestLibraryNeverWritesTheProcessEnvironment(t *testing.T) {
	root := filepath.Join("..", "..") // go/
	banned := map[string]bool{"os.Setenv": true, "os.Unsetenv": true, "os.Clearenv": true,
		"syscall.Setenv": true, "syscall.Unsetenv": true, "syscall.Clearenv": true}
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		files++
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok && banned[pkg.Name+"."+sel.Sel.Name] {
					t.Errorf("%s calls %s.%s", path, pkg.Name, sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Fatalf("scanned %d Go files under %s: the walk missed the tree", files, root)
	}
}
