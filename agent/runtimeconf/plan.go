package runtimeconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// Sentinel errors, wrapped with the file (and line) they are about.
var (
	// ErrParse: a file the plan must read or edit is not valid TOML or JSON.
	ErrParse = errors.New("cannot parse")
	// ErrTarget: the directory to write into is missing or not writable.
	ErrTarget = errors.New("target directory")
	// ErrOptions: the options ask for something the runtime cannot do.
	ErrOptions = errors.New("invalid options")
	// ErrNothingToUndo: no backup record of an earlier run exists.
	ErrNothingToUndo = errors.New("nothing to undo")
	// ErrEdit: a file would need an edit shoal does not make by itself.
	ErrEdit = errors.New("cannot edit")
)

// marker starts every file shoal writes whole, so a later run may replace it.
const marker = "# Written by shoal configure"

// Registry is one registry the runtime should ask the agent for.
type Registry struct {
	// Host is the registry as image references name it: docker.io, ghcr.io,
	// registry.example:5000.
	Host string
	// URL is where the registry itself answers, for the runtime's fallback
	// when the agent is down: scheme and host[:port]. Empty: https://Host
	// (registry-1.docker.io for docker.io).
	URL string
}

// Endpoint returns the fallback's URL: scheme://host[:port], no path.
func (r Registry) Endpoint() string {
	if r.URL != "" {
		return strings.TrimRight(r.URL, "/")
	}
	if r.Host == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + r.Host
}

// Options are what `shoal configure` was asked.
type Options struct {
	// Root is where the host's / is; "" is "/".
	Root string
	// Agent is the agent's registry URL, e.g. http://127.0.0.1:5050.
	Agent string
	// Registries are the registries to send through the agent.
	Registries []Registry
	// AllRegistries (containerd only) sends every registry through the
	// agent (certs.d/_default); the agent must allow unknown registries.
	AllRegistries bool
	// Force replaces a hosts.toml shoal did not write.
	Force bool
	// EditConfig lets the plan edit the runtime's own configuration file
	// (containerd's config.toml); without it the checks only say what to change.
	EditConfig bool
	// StreamProcessor (containerd, with EditConfig) registers Decompressor
	// as containerd's stream processor for gzip and zstd layers.
	StreamProcessor bool
	// Decompressor is the host's path of the shoal binary that containerd
	// runs as `shoal decompress`.
	Decompressor string
	// DialTimeout is containerd's dial_timeout for the agent, e.g. "300ms".
	DialTimeout string
}

func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

// hostPath maps a host path onto the filesystem under Root.
func (o Options) hostPath(p string) string { return filepath.Join(o.root(), p) }

func (o Options) validate() error {
	u, err := url.Parse(o.Agent)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("%w: --agent %q: want http(s)://host:port", ErrOptions, o.Agent)
	}
	for _, r := range o.Registries {
		if !grammar.Registry(r.Host) {
			return fmt.Errorf("%w: registry %q: want HOST[:PORT]", ErrOptions, r.Host)
		}
		if r.URL != "" {
			u, err := url.Parse(r.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
				return fmt.Errorf("%w: registry %s: URL %q: want http(s)://host[:port]", ErrOptions, r.Host, r.URL)
			}
		}
	}
	if st, err := os.Stat(o.root()); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: --root %s is not a directory", ErrTarget, o.root())
	}
	return nil
}

func (o Options) requireRegistries() error {
	if len(o.Registries) == 0 && !o.AllRegistries {
		return fmt.Errorf("%w: name at least one --registry, or --all-registries", ErrOptions)
	}
	return nil
}

func (o Options) agentURL() string { return strings.TrimRight(o.Agent, "/") }

// agentHostPort is the agent's host:port, as containers/image names mirrors.
func (o Options) agentHostPort() string {
	u, _ := url.Parse(o.Agent)
	return u.Host
}

// Change is one file the plan writes. Old is its content now (nil: it does
// not exist); New is what it will hold.
type Change struct {
	Path string // the host's path
	Old  []byte
	New  []byte
	Mode fs.FileMode
}

// Finding is a pre-flight check that failed: what is wrong and what to
// change. Line is 0 when the finding is about no line in particular.
type Finding struct {
	File    string
	Line    int
	Problem string
	Fix     string
}

func (f Finding) String() string {
	where := f.File
	if f.Line > 0 {
		where = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	s := where + ": " + f.Problem
	if f.Fix != "" {
		s += "; " + f.Fix
	}
	return s
}

// Plan is what a configure run would change.
type Plan struct {
	Runtime  string
	Changes  []Change // only files whose content changes
	Findings []Finding
	Notes    []string // what the user should know even when nothing is wrong
}

func (p *Plan) add(path string, old, new []byte) {
	if old != nil && bytes.Equal(old, new) {
		return
	}
	p.Changes = append(p.Changes, Change{Path: path, Old: old, New: new, Mode: 0o644})
}

func (p *Plan) find(f Finding) { p.Findings = append(p.Findings, f) }

// Diff is the plan as a unified diff of every changed file.
func (p *Plan) Diff() string {
	var b strings.Builder
	for _, c := range p.Changes {
		b.WriteString(unifiedDiff(c.Path, c.Old, c.New))
	}
	return b.String()
}

// readFile reads a host path under Root; a missing file is (nil, nil).
func readFile(o Options, p string) ([]byte, error) {
	b, err := os.ReadFile(o.hostPath(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// requireDir fails unless the host directory p exists under Root.
func requireDir(o Options, p, what string) error {
	st, err := os.Stat(o.hostPath(p))
	if err != nil || !st.IsDir() {
		return fmt.Errorf("%w: %s missing under %s: is %s installed here (or give --root)?", ErrTarget, p, o.root(), what)
	}
	return nil
}

// backupPath is where a runtime's backup record lives, as a host path.
func backupPath(runtime string) string {
	return filepath.Join("/var/lib/shoal/configure", runtime+".json")
}

// record is the backup of every file a runtime's runs changed, as it was
// before the first of them, and the directories they created.
type record struct {
	Files []saved  `json:"files"`
	Dirs  []string `json:"dirs,omitempty"` // created, deepest last
}

type saved struct {
	Path    string      `json:"path"`
	Existed bool        `json:"existed"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	Content []byte      `json:"content,omitempty"`
}

func loadRecord(o Options, runtime string) (*record, error) {
	b, err := readFile(o, backupPath(runtime))
	if err != nil || b == nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrParse, backupPath(runtime), err)
	}
	return &r, nil
}

// Apply writes the plan: every new file goes to a temporary file beside its
// target first, and only when all of them (and the backup record) are
// written are they renamed into place. On an error nothing is changed.
func Apply(o Options, p *Plan) error {
	if len(p.Changes) == 0 {
		return nil
	}
	rec, err := loadRecord(o, p.Runtime)
	if err != nil {
		return err
	}
	if rec == nil {
		rec = &record{}
	}
	for _, c := range p.Changes {
		if slices.ContainsFunc(rec.Files, func(s saved) bool { return s.Path == c.Path }) {
			continue // the record keeps the file as it was before the first run
		}
		s := saved{Path: c.Path, Existed: c.Old != nil, Content: c.Old}
		if st, err := os.Stat(o.hostPath(c.Path)); err == nil {
			s.Mode = st.Mode().Perm()
		}
		rec.Files = append(rec.Files, s)
	}
	var tx txn
	defer tx.rollback()
	for _, c := range p.Changes {
		dirs, err := mkdirs(o, filepath.Dir(c.Path))
		tx.created(o, dirs)
		if err != nil {
			return err
		}
		for _, d := range dirs {
			if !slices.Contains(rec.Dirs, d) {
				rec.Dirs = append(rec.Dirs, d)
			}
		}
		mode := c.Mode
		if st, err := os.Stat(o.hostPath(c.Path)); err == nil {
			mode = st.Mode().Perm()
		}
		if err := tx.stage(o.hostPath(c.Path), c.New, mode); err != nil {
			return fmt.Errorf("write %s: %w", c.Path, err)
		}
	}
	bdirs, err := mkdirs(o, filepath.Dir(backupPath(p.Runtime)))
	tx.created(o, bdirs)
	if err != nil {
		return err
	}
	for _, d := range bdirs {
		if !slices.Contains(rec.Dirs, d) {
			rec.Dirs = append(rec.Dirs, d)
		}
	}
	body, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := tx.stage(o.hostPath(backupPath(p.Runtime)), append(body, '\n'), 0o600); err != nil {
		return fmt.Errorf("write backup %s: %w", backupPath(p.Runtime), err)
	}
	return tx.commit()
}

// Undo restores every file of the runtime's backup record as it was before
// the first run, removes the files and directories the runs created, and
// then the record itself. It returns what it restored.
func Undo(o Options, runtime string) ([]Change, error) {
	if st, err := os.Stat(o.root()); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: --root %s is not a directory", ErrTarget, o.root())
	}
	rec, err := loadRecord(o, runtime)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: no %s under %s", ErrNothingToUndo, backupPath(runtime), o.root())
	}
	var tx txn
	defer tx.rollback()
	var changes []Change
	for _, s := range rec.Files {
		cur, err := readFile(o, s.Path)
		if err != nil {
			return nil, err
		}
		if !s.Existed {
			if cur != nil {
				tx.removes = append(tx.removes, o.hostPath(s.Path))
				changes = append(changes, Change{Path: s.Path, Old: cur})
			}
			continue
		}
		content := s.Content
		if content == nil {
			content = []byte{}
		}
		if cur != nil && bytes.Equal(cur, content) {
			continue
		}
		mode := s.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tx.stage(o.hostPath(s.Path), content, mode); err != nil {
			return nil, fmt.Errorf("restore %s: %w", s.Path, err)
		}
		changes = append(changes, Change{Path: s.Path, Old: cur, New: content})
	}
	tx.removes = append(tx.removes, o.hostPath(backupPath(runtime)))
	if err := tx.commit(); err != nil {
		return nil, err
	}
	// Directories the runs created go too, deepest first, if nothing else
	// was put in them since.
	for i := len(rec.Dirs) - 1; i >= 0; i-- {
		_ = os.Remove(o.hostPath(rec.Dirs[i]))
	}
	return changes, nil
}

// mkdirs creates the host directory dir under Root and returns the
// directories it created, shallowest first.
func mkdirs(o Options, dir string) ([]string, error) {
	var missing []string
	for d := dir; d != "/" && d != "." && d != ""; d = filepath.Dir(d) {
		if _, err := os.Stat(o.hostPath(d)); err == nil {
			break
		}
		missing = append(missing, d)
	}
	slices.Reverse(missing)
	var made []string
	for _, d := range missing {
		if err := os.Mkdir(o.hostPath(d), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return made, fmt.Errorf("%w: create %s: %w", ErrTarget, d, err)
		}
		made = append(made, d)
	}
	return made, nil
}

// txn stages files as temporaries and renames them all at commit.
type txn struct {
	temps   []string // temp file, parallel to finals
	finals  []string
	removes []string
	dirs    []string // created for this txn, removed on rollback
	done    bool
}

func (t *txn) created(o Options, dirs []string) {
	for _, d := range dirs {
		t.dirs = append(t.dirs, o.hostPath(d))
	}
}

func (t *txn) stage(path string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".shoal-*")
	if err != nil {
		return err
	}
	t.temps = append(t.temps, f.Name())
	t.finals = append(t.finals, path)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (t *txn) commit() error {
	for i, tmp := range t.temps {
		if err := os.Rename(tmp, t.finals[i]); err != nil {
			return fmt.Errorf("rename into %s: %w", t.finals[i], err)
		}
	}
	for _, p := range t.removes {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	t.done = true
	return nil
}

func (t *txn) rollback() {
	if t.done {
		return
	}
	for _, tmp := range t.temps {
		_ = os.Remove(tmp)
	}
	for i := len(t.dirs) - 1; i >= 0; i-- {
		_ = os.Remove(t.dirs[i])
	}
}
