package runtimeconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// host makes a root with the given host files.
func host(t *testing.T, files map[string]string, dirs ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range append(dirs, "/etc/containerd", "/etc/containers", "/etc/docker") {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// snapshot reads every file under root (the backup record left out).
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if info.IsDir() {
			got["/"+rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		got["/"+rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func equalSnap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

const v2Config = `version = 2
# kept byte for byte
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"   # trailing comment

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"

[debug]
  level = "info"
`

func opts(root string) Options {
	return Options{Root: root, Agent: "http://127.0.0.1:5050",
		Registries: []Registry{{Host: "docker.io"}, {Host: "reg.example:5000", URL: "http://127.0.0.1:5000"}}}
}

// TestContainerdRoundTrip applies, re-applies (no change) and undoes
// (byte for byte) each kind of containerd config.
func TestContainerdRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		config   string // "" : no config.toml
		edit     bool
		findings []string
		wantCP   string // config_path after the run, "" : not checked
	}{
		{"v2 several dirs, checked only", v2Config, false, []string{"issue 12415"}, ""},
		{"v2 several dirs, edited", v2Config, true, nil, `config_path = "/etc/containerd/certs.d"`},
		{"v2 unset, checked only", "version = 2\n", false, []string{"config_path is not set"}, ""},
		{"v2 unset, edited", "version = 2\n[debug]\n  level = \"info\"\n", true, nil, "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"},
		{"v3 table without key, edited", "version = 3\n\n[plugins.'io.containerd.cri.v1.images'.registry]\n  # none yet\n", true, nil, "[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = \"/etc/containerd/certs.d\"\n  # none yet\n"},
		{"v1 mirrors", "[plugins.cri.registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://x\"]\n", false, []string{"mirrors is set", "config_path is not set"}, ""},
		{"no config, checked only", "", false, []string{"missing"}, ""},
		{"no config, edited", "", true, nil, "version = 2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{}
			if tt.config != "" {
				files[ContainerdConfig] = tt.config
			}
			root := host(t, files)
			before := snapshot(t, root)
			o := opts(root)
			o.EditConfig = tt.edit
			p, err := Containerd(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Findings) != len(tt.findings) {
				t.Fatalf("findings %v, want %d like %q", p.Findings, len(tt.findings), tt.findings)
			}
			for i, want := range tt.findings {
				if !strings.Contains(p.Findings[i].String(), want) {
					t.Errorf("finding %q lacks %q", p.Findings[i], want)
				}
			}
			if err := Apply(o, p); err != nil {
				t.Fatal(err)
			}
			hosts, err := os.ReadFile(filepath.Join(root, "/etc/containerd/certs.d/docker.io/hosts.toml"))
			if err != nil || !strings.Contains(string(hosts), `server = "https://registry-1.docker.io"`) || !strings.Contains(string(hosts), `[host."http://127.0.0.1:5050"]`) {
				t.Fatalf("hosts.toml %q, %v", hosts, err)
			}
			if tt.wantCP != "" {
				cfg, _ := os.ReadFile(filepath.Join(root, ContainerdConfig))
				if !strings.Contains(string(cfg), tt.wantCP) {
					t.Fatalf("config.toml lacks %q:\n%s", tt.wantCP, cfg)
				}
				if tt.config != "" {
					// Every line of the old file is still there.
					for _, l := range strings.Split(tt.config, "\n") {
						if !strings.Contains(l, "config_path") && !strings.Contains(string(cfg), l) {
							t.Errorf("line %q lost:\n%s", l, cfg)
						}
					}
				}
			}
			again, err := Containerd(o)
			if err != nil || len(again.Changes) != 0 {
				t.Fatalf("second run: %v changes %v", err, again.Diff())
			}
			if _, err := Undo(o, "containerd"); err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, root); !equalSnap(before, after) {
				t.Fatalf("undo left\n%v\nwant\n%v", after, before)
			}
			if _, err := Undo(o, "containerd"); !errors.Is(err, ErrNothingToUndo) {
				t.Fatalf("second undo: %v", err)
			}
		})
	}
}

// TestExistingHostsTomlKept keeps a hosts.toml shoal did not write unless
// --force, and then restores it on undo.
func TestExistingHostsTomlKept(t *testing.T) {
	t.Parallel()
	mine := "server = \"https://mirror.example\"\n"
	root := host(t, map[string]string{"/etc/containerd/certs.d/docker.io/hosts.toml": mine,
		ContainerdConfig: "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"},
		"/etc/containerd/certs.d/docker.io")
	o := opts(root)
	p, err := Containerd(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Findings) != 1 || !strings.Contains(p.Findings[0].Problem, "not written by shoal") || len(p.Changes) != 1 {
		t.Fatalf("findings %v, changes %d", p.Findings, len(p.Changes))
	}
	o.Force = true
	before := snapshot(t, root)
	if p, err = Containerd(o); err != nil || len(p.Changes) != 2 {
		t.Fatalf("--force: %v, %d changes", err, len(p.Changes))
	}
	if err := Apply(o, p); err != nil {
		t.Fatal(err)
	}
	if _, err := Undo(o, "containerd"); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, root); !equalSnap(before, after) {
		t.Fatalf("undo left %v", after)
	}
}

// TestBadInput: unparseable files are one error naming file and line, and
// nothing is written; so is a target that cannot be written.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		plan  func(Options) (*Plan, error)
		want  string
	}{
		{"config.toml", map[string]string{ContainerdConfig: "version = 2\n\n[plugins\n"}, Containerd, "/etc/containerd/config.toml:3"},
		{"hosts.toml", map[string]string{ContainerdConfig: "version = 2\n", "/etc/containerd/certs.d/docker.io/hosts.toml": "server = \n"}, Containerd, "certs.d/docker.io/hosts.toml:1"},
		{"daemon.json", map[string]string{DockerDaemonJSON: "{\n  \"debug\": true,\n  \"x\": \n}\n"}, Docker, "/etc/docker/daemon.json:4"},
		{"registries.conf", map[string]string{"/etc/containers/registries.conf": "[[registry]\n"}, func(o Options) (*Plan, error) { return Registries(o, "podman") }, "/etc/containers/registries.conf:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := host(t, tt.files, "/etc/containerd/certs.d/docker.io")
			before := snapshot(t, root)
			o := opts(root)
			o.Registries = o.Registries[:1]
			_, err := tt.plan(o)
			if !errors.Is(err, ErrParse) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %q, want one line naming %s", err, tt.want)
			}
			if !equalSnap(before, snapshot(t, root)) {
				t.Fatal("files changed")
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		t.Parallel()
		o := opts(t.TempDir())
		if _, err := Containerd(o); !errors.Is(err, ErrTarget) {
			t.Fatalf("err %v", err)
		}
	})
}

// TestPartialFailureWritesNothing: when one file cannot be staged, no other
// file of the plan is changed.
func TestPartialFailureWritesNothing(t *testing.T) {
	t.Parallel()
	root := host(t, map[string]string{ContainerdConfig: v2Config}, "/etc/containerd/certs.d")
	// A file where the second registry's directory should go.
	if err := os.WriteFile(filepath.Join(root, "/etc/containerd/certs.d/reg.example:5000"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	o := opts(root)
	o.EditConfig = true
	p, err := Containerd(o)
	if err == nil {
		err = Apply(o, p)
	}
	if err == nil {
		t.Fatal("no error")
	}
	if after := snapshot(t, root); !equalSnap(before, after) {
		t.Fatalf("files changed:\n%v", after)
	}
}

func TestRegistriesDropIn(t *testing.T) {
	t.Parallel()
	root := host(t, nil)
	o := Options{Root: root, Agent: "http://127.0.0.1:5050", Registries: []Registry{{Host: "docker.io"}, {Host: "reg-b.test", URL: "http://127.0.0.1:5001"}}}
	p, err := Registries(o, "crio")
	if err != nil {
		t.Fatal(err)
	}
	got := string(p.Changes[0].New)
	for _, want := range []string{"prefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:5050/docker.io\"\ninsecure = true\n",
		"prefix = \"reg-b.test\"\nlocation = \"127.0.0.1:5001\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:5050/reg-b.test\""} {
		if !strings.Contains(got, want) {
			t.Errorf("drop-in lacks %q:\n%s", want, got)
		}
	}
	o.Registries = []Registry{{Host: "reg.example:5000"}}
	if _, err := Registries(o, "podman"); !errors.Is(err, ErrOptions) {
		t.Fatalf("a registry with a port: %v", err)
	}
}

func TestDockerMerge(t *testing.T) {
	t.Parallel()
	tests := []struct{ old, want string }{
		{"", "{\n  \"registry-mirrors\": [\"http://127.0.0.1:5050\"]\n}\n"},
		{"{}\n", "{\n  \"registry-mirrors\": [\"http://127.0.0.1:5050\"]\n}\n"},
		{"{\n  \"debug\": true,\n  \"log-opts\": {\"max-size\": \"10m\"}\n}\n", "{\n  \"registry-mirrors\": [\"http://127.0.0.1:5050\"],\n  \"debug\": true,\n  \"log-opts\": {\"max-size\": \"10m\"}\n}\n"},
		{"{\"registry-mirrors\": [\"https://m.example\"], \"debug\": true}", "{\"registry-mirrors\": [\"http://127.0.0.1:5050\", \"https://m.example\"], \"debug\": true}"},
		{"{\"registry-mirrors\": [\"http://127.0.0.1:5050\"]}", "{\"registry-mirrors\": [\"http://127.0.0.1:5050\"]}"},
	}
	for _, tt := range tests {
		got, err := mergeMirror([]byte(tt.old), "http://127.0.0.1:5050")
		if err != nil || string(got) != tt.want {
			t.Errorf("merge %q:\n got %q, %v\nwant %q", tt.old, got, err, tt.want)
		}
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	got := unifiedDiff("/f", []byte("a\nb\nc\n"), []byte("a\nB\nc\nd\n"))
	want := "--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n"
	if got != want {
		t.Fatalf("diff\n%s\nwant\n%s", got, want)
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	root := host(t, nil)
	tests := []struct {
		name string
		o    Options
	}{
		{"no registry", Options{Root: root, Agent: "http://127.0.0.1:5050"}},
		{"agent without scheme", Options{Root: root, Agent: "127.0.0.1:5050", Registries: []Registry{{Host: "docker.io"}}}},
		{"registry with a path", Options{Root: root, Agent: "http://127.0.0.1:5050", Registries: []Registry{{Host: "docker.io/library"}}}},
		{"registry URL with a path", Options{Root: root, Agent: "http://127.0.0.1:5050", Registries: []Registry{{Host: "r.example", URL: "http://r.example/v2"}}}},
		{"stream processor without --edit-config", Options{Root: root, Agent: "http://127.0.0.1:5050", Registries: []Registry{{Host: "docker.io"}}, StreamProcessor: true, Decompressor: "/usr/bin/shoal"}},
		{"missing root", Options{Root: filepath.Join(root, "nope"), Agent: "http://127.0.0.1:5050", Registries: []Registry{{Host: "docker.io"}}}},
	}
	for _, tt := range tests {
		if _, err := Containerd(tt.o); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err %v, want one line", tt.name, err)
		}
	}
}

func TestAllRegistries(t *testing.T) {
	t.Parallel()
	root := host(t, map[string]string{ContainerdConfig: "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"})
	o := Options{Root: root, Agent: "http://127.0.0.1:5050", AllRegistries: true}
	p, err := Containerd(o)
	if err != nil || len(p.Changes) != 1 || p.Changes[0].Path != "/etc/containerd/certs.d/_default/hosts.toml" {
		t.Fatalf("%v %+v", err, p)
	}
	if got := string(p.Changes[0].New); strings.Contains(got, "server") || !strings.Contains(got, `[host."http://127.0.0.1:5050"]`) {
		t.Fatalf("_default/hosts.toml:\n%s", got)
	}
	for _, plan := range []func(Options) (*Plan, error){Docker, func(o Options) (*Plan, error) { return Registries(o, "crio") }} {
		if _, err := plan(o); !errors.Is(err, ErrOptions) {
			t.Errorf("--all-registries outside containerd: %v", err)
		}
	}
}
