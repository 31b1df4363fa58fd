package registryshim_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The shim must stay importable by anything: only the standard library, the
// OCI and Prometheus modules and its own leaf grammar package, nothing else
// of Shoal's.
func TestImportsStayMinimal(t *testing.T) {
	t.Parallel()
	allowed := []string{
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/",
		"github.com/prometheus/client_golang/",
		"github.com/shoal-dev/shoal/registryshim/grammar",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, file, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
	imports:
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if !strings.Contains(first, ".") {
				continue // standard library
			}
			for _, a := range allowed {
				if path == a || strings.HasPrefix(path, a) {
					continue imports
				}
			}
			t.Errorf("%s imports %s", file, path)
		}
	}
}
