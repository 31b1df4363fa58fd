package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/shoal-dev/shoal"

// rules is the table of import rules. Every set in it names at least one
// package that must exist; a rename breaks the rule instead of emptying it.
var rules = []rule{
	{
		name:       "registryshim imports nothing of ours outside registryshim",
		from:       trees("registryshim"),
		deny:       trees(mod).minus(trees("registryshim")),
		transitive: true,
	},
	{
		name:       "the piece picker and piece import nothing of ours",
		from:       pkgs("p2p/picker", "p2p/piece"),
		deny:       trees(mod),
		transitive: true,
	},
	{
		name:       "the tracker server never imports the agent",
		from:       trees("tracker/server"),
		deny:       trees("agent"),
		transitive: true,
	},
	{
		// Agents do not link the server; nor does anything else but cmd,
		// the test helpers and tests.
		name:       "only cmd and test helpers link the tracker server",
		from:       trees(mod).minus(trees("cmd", "tracker/server"), helpers),
		deny:       trees("tracker/server"),
		transitive: true,
	},
	{
		name: "only cmd imports viper and cobra",
		from: trees(mod).minus(trees("cmd")),
		deny: trees("github.com/spf13/viper", "github.com/spf13/cobra"),
	},
	{
		name: "test helpers are imported only by tests and other test helpers",
		from: trees(mod).minus(helpers),
		deny: helpers,
	},
	{
		// Its errors are its own; the agent maps them onto the OCI table.
		name:       "the upstream client imports nothing of registryshim but the grammar",
		from:       trees("agent/upstream"),
		deny:       trees("registryshim").minus(pkgs("registryshim/grammar")),
		transitive: true,
	},
	{
		name:       "the tracker API and client import nothing of the agent",
		from:       pkgs("tracker"),
		deny:       trees("agent"),
		transitive: true,
	},
}

// TestImportRules checks every rule against the module's real import graph.
func TestImportRules(t *testing.T) {
	t.Parallel()
	g := load(t)
	for _, path := range g.paths() {
		if e := g[path].Error; e != nil {
			t.Errorf("%s: %s (its imports cannot be checked)", short(path), e.Err)
		}
	}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			for _, problem := range r.check(g) {
				t.Error(problem)
			}
		})
	}
}

// TestRulesCatchViolations runs the table on a hand-made module that keeps
// every rule, then on copies that each break one, so that TestImportRules
// cannot pass because the checker sees nothing.
func TestRulesCatchViolations(t *testing.T) {
	t.Parallel()
	clean := map[string][]string{
		"registryshim":          {"net/http", "registryshim/grammar"},
		"registryshim/grammar":  nil,
		"registryshim/shimtest": {"registryshim"},
		"p2p/picker":            nil,
		"p2p/piece":             nil,
		"p2p":                   {"p2p/piece"},
		"p2p/p2ptest":           {"p2p"},
		"tracker":               {"p2p/piece"},
		"tracker/server":        {"tracker"},
		"tracker/trackertest":   {"tracker/server"},
		"agent/store":           nil,
		"agent/upstream":        {"registryshim/grammar"},
		"agent":                 {"registryshim", "p2p", "tracker", "agent/store", "agent/upstream"},
		"agent/agenttest":       {"deploy/conf", "tracker/trackertest"},
		"deploy/conf":           nil,
		"deploy/testbed":        {"deploy/conf"},
		"deploy/e2e":            nil, // test files only
		"cmd/shoal":             {"agent", "tracker/server", "github.com/spf13/viper", "github.com/spf13/cobra"},
	}
	cases := []struct {
		name   string
		add    [2]string         // an import from add[0] to add[1], if set
		remove string            // a package to delete, if set
		want   map[string]string // rule name → text one of its problems has
	}{
		{name: "clean"},
		{
			name: "helper imports helper",
			add:  [2]string{"agent/agenttest", "p2p/p2ptest"},
		},
		{
			name: "shim leaf imports p2p",
			add:  [2]string{"registryshim/grammar", "p2p/piece"},
			want: map[string]string{rules[0].name: "registryshim imports p2p/piece: registryshim → registryshim/grammar → p2p/piece"},
		},
		{
			name: "piece imports deploy/conf",
			add:  [2]string{"p2p/piece", "deploy/conf"},
			want: map[string]string{rules[1].name: "p2p/piece imports deploy/conf"},
		},
		{
			name: "server reaches the agent",
			add:  [2]string{"tracker/server", "agent/store"},
			want: map[string]string{rules[2].name: "tracker/server imports agent/store"},
		},
		{
			name: "agent links the server",
			add:  [2]string{"agent/store", "tracker/server"},
			want: map[string]string{rules[3].name: "agent imports tracker/server: agent → agent/store → tracker/server"},
		},
		{
			name: "testbed reads viper",
			add:  [2]string{"deploy/testbed", "github.com/spf13/viper"},
			want: map[string]string{rules[4].name: "deploy/testbed imports github.com/spf13/viper"},
		},
		{
			name: "agent imports a helper",
			add:  [2]string{"agent", "p2p/p2ptest"},
			want: map[string]string{rules[5].name: "agent imports p2p/p2ptest"},
		},
		{
			name: "upstream speaks OCI errors",
			add:  [2]string{"agent/upstream", "registryshim"},
			want: map[string]string{rules[6].name: "agent/upstream imports registryshim"},
		},
		{
			name: "tracker client reaches the agent",
			add:  [2]string{"tracker", "agent/store"},
			want: map[string]string{
				rules[2].name: "tracker/server imports agent/store: tracker/server → tracker → agent/store",
				rules[7].name: "tracker imports agent/store",
			},
		},
		{
			name:   "picker renamed",
			remove: "p2p/picker",
			want:   map[string]string{rules[1].name: "no package matches p2p/picker"},
		},
		{
			name:   "tracker server missing",
			remove: "tracker/server",
			want: map[string]string{
				rules[2].name: "no package matches tracker/server/...",
				rules[3].name: "no package matches tracker/server/...",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The import path of p: ours unless it is one of these.
			path := func(p string) string {
				if p == "net/http" || strings.HasPrefix(p, "github.com/") {
					return p
				}
				return mod + "/" + p
			}
			g := graph{}
			for from, imports := range clean {
				p := &pkg{ImportPath: path(from)}
				for _, imp := range imports {
					p.Imports = append(p.Imports, path(imp))
				}
				g[p.ImportPath] = p
			}
			for _, p := range []string{"net/http", "github.com/spf13/viper", "github.com/spf13/cobra"} {
				g[p] = &pkg{ImportPath: p, DepOnly: true}
			}
			if tc.add[0] != "" {
				p := g[path(tc.add[0])]
				p.Imports = append(p.Imports, path(tc.add[1]))
			}
			if tc.remove != "" {
				delete(g, path(tc.remove))
			}
			for _, r := range rules {
				problems := r.check(g)
				want, ok := tc.want[r.name]
				switch {
				case !ok && len(problems) > 0:
					t.Errorf("%s: unexpected problems:\n%s", r.name, strings.Join(problems, "\n"))
				case ok && !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }):
					t.Errorf("%s: no problem says %q; got:\n%s", r.name, want, strings.Join(problems, "\n"))
				}
			}
		})
	}
}

// A rule forbids the packages in from to import the packages in deny.
type rule struct {
	name string
	from set // the packages the rule constrains
	deny set // what they may not import
	// transitive forbids a chain of non-test imports that reaches deny,
	// not only a direct import.
	transitive bool
}

// check returns the rule's problems in g: each set name that matches no
// package, then each offending package with the chain that breaks the rule.
func (r rule) check(g graph) []string {
	var problems []string
	for _, rt := range append(slices.Clone(r.from.roots), r.deny.roots...) {
		if !g.any(rt.has) {
			problems = append(problems, fmt.Sprintf("no package matches %s: renamed or moved? Point the rule at the new path rather than dropping it", rt.desc))
		}
	}
	for _, path := range g.paths() {
		if !r.from.has(path) {
			continue
		}
		var chains [][]string
		if r.transitive {
			chains = g.reach(path, r.deny.has)
		} else {
			for _, imp := range g[path].Imports {
				if r.deny.has(imp) {
					chains = append(chains, []string{path, imp})
				}
			}
		}
		for _, c := range chains {
			msg := fmt.Sprintf("%s imports %s", short(path), short(c[len(c)-1]))
			if len(c) > 2 {
				msg += ": " + strings.Join(shortAll(c), " → ")
			}
			problems = append(problems, msg)
		}
	}
	return problems
}

// A set is a set of packages, named by import path.
type set struct {
	roots []root // each must match a package
	not   []set
}

// A root is one import path or pattern in a set.
type root struct {
	desc string
	has  func(path string) bool
}

func (s set) has(path string) bool {
	return slices.ContainsFunc(s.roots, func(r root) bool { return r.has(path) }) &&
		!slices.ContainsFunc(s.not, func(n set) bool { return n.has(path) })
}

// minus returns the packages in s that are in none of others.
func (s set) minus(others ...set) set {
	return set{roots: s.roots, not: append(slices.Clone(s.not), others...)}
}

// pkgs is the packages at the given paths, ours if the path's first element
// has no dot.
func pkgs(paths ...string) set {
	var s set
	for _, p := range paths {
		p := full(p)
		s.roots = append(s.roots, root{desc: short(p), has: func(path string) bool { return path == p }})
	}
	return s
}

// trees is the packages at the given paths and every package beneath them.
func trees(paths ...string) set {
	var s set
	for _, p := range paths {
		p := full(p)
		s.roots = append(s.roots, root{desc: short(p) + "/...", has: func(path string) bool {
			return path == p || strings.HasPrefix(path, p+"/")
		}})
	}
	return s
}

// helpers is our test helper packages: the last element of the import path
// ends in "test" (agenttest, storetest, shimtest, p2ptest, trackertest).
var helpers = set{roots: []root{{desc: "test helpers (…test)", has: func(path string) bool {
	return trees(mod).has(path) && strings.HasSuffix(path, "test")
}}}}

// full returns the import path of p, which is relative to the module if its
// first element has no dot.
func full(p string) string {
	first, _, _ := strings.Cut(p, "/")
	if strings.Contains(first, ".") {
		return p
	}
	return mod + "/" + p
}

// short returns path relative to the module, if it is ours.
func short(path string) string {
	if rest, ok := strings.CutPrefix(path, mod+"/"); ok {
		return rest
	}
	return path
}

func shortAll(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = short(p)
	}
	return out
}

// pkg is the part of a `go list -json` package the rules read.
type pkg struct {
	ImportPath string
	Imports    []string // non-test imports only
	DepOnly    bool     // listed only as a dependency of ours
	Error      *struct{ Err string }
}

// graph is a module's packages and all their dependencies, by import path.
type graph map[string]*pkg

func (g graph) paths() []string {
	paths := make([]string, 0, len(g))
	for p := range g {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

func (g graph) any(has func(string) bool) bool {
	for p := range g {
		if has(p) {
			return true
		}
	}
	return false
}

// reach returns, for each package matching deny that from reaches through
// packages that do not match it, the shortest chain of imports from from to
// it. A match is not searched further: its own imports are its rule's
// business, and listing them would bury the one import to fix.
func (g graph) reach(from string, deny func(string) bool) [][]string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	var chains [][]string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p, ok := g[cur]
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := prev[imp]; seen {
				continue
			}
			prev[imp] = cur
			if !deny(imp) {
				queue = append(queue, imp)
				continue
			}
			var chain []string
			for at := imp; at != ""; at = prev[at] {
				chain = append(chain, at)
			}
			slices.Reverse(chain)
			chains = append(chains, chain)
		}
	}
	return chains
}

// load lists every package of the module, with all its dependencies, from
// the module root.
func load(t *testing.T) graph {
	t.Helper()
	gomod := strings.TrimSpace(string(goCmd(t, "", "env", "GOMOD")))
	if gomod == "" || gomod == "/dev/null" || filepath.Base(gomod) != "go.mod" {
		t.Fatalf("go env GOMOD = %q: not inside the module", gomod)
	}
	out := goCmd(t, filepath.Dir(gomod), "list", "-e", "-deps", "-json=ImportPath,Imports,DepOnly,Error", mod+"/...")
	g := graph{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		g[p.ImportPath] = &p
	}
	if !g.any(trees(mod).has) {
		t.Fatalf("go list found no package under %s", mod)
	}
	return g
}

func goCmd(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}
