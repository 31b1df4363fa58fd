package runtimeconf

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// ContainerdConfig is containerd's config.toml, as a host path.
const ContainerdConfig = "/etc/containerd/config.toml"

// defaultHostsDir is where hosts.toml files go when config_path names none.
const defaultHostsDir = "/etc/containerd/certs.d"

// defaultDialTimeout bounds how long containerd (2.1 on) waits for the
// agent before it asks the next host: short, the agent is on the same node.
const defaultDialTimeout = "300ms"

// Layer media types containerd's unpack hands to a stream processor, and
// what the processor returns.
var (
	gzipLayerTypes = []string{"application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"}
	zstdLayerTypes = []string{"application/vnd.oci.image.layer.v1.tar+zstd"}
	tarLayerType   = "application/vnd.oci.image.layer.v1.tar"
)

// streamProcessorIDs name the [stream_processors] entries shoal writes.
const (
	gzipProcessor = "io.containerd.processor.shoal.gzip"
	zstdProcessor = "io.containerd.processor.shoal.zstd"
)

// registryTable is where a config.toml of that version keeps the CRI
// plugin's registry settings (config_path).
func registryTable(version int64) []string {
	switch version {
	case 2:
		return []string{"plugins", "io.containerd.grpc.v1.cri", "registry"}
	case 3:
		return []string{"plugins", "io.containerd.cri.v1.images", "registry"}
	default: // 1, or no version: containerd 1.x reads version 1
		return []string{"plugins", "cri", "registry"}
	}
}

// Containerd plans hosts.toml files for every registry (and _default with
// AllRegistries) under the directory containerd's config_path names, with
// the agent as the first host and the registry as the fallback server. It
// checks config.toml for what would keep containerd from reading them, and
// edits it (config_path, stream processors) only with EditConfig.
func Containerd(o Options) (*Plan, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := o.requireRegistries(); err != nil {
		return nil, err
	}
	if o.StreamProcessor && !o.EditConfig {
		return nil, fmt.Errorf("%w: --stream-processor edits config.toml: add --edit-config", ErrOptions)
	}
	if o.StreamProcessor && !filepath.IsAbs(o.Decompressor) {
		return nil, fmt.Errorf("%w: --stream-processor needs the host's absolute path of shoal, got %q", ErrOptions, o.Decompressor)
	}
	if err := requireDir(o, filepath.Dir(ContainerdConfig), "containerd"); err != nil {
		return nil, err
	}
	p := &Plan{Runtime: "containerd"}
	old, err := readFile(o, ContainerdConfig)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{}
	if old != nil {
		if cfg, err = parseTOML(ContainerdConfig, old); err != nil {
			return nil, err
		}
	}
	version, _ := cfg["version"].(int64)
	text := string(old)
	if old == nil && o.EditConfig {
		version = 2
		text = marker + ": containerd reads every other setting from its defaults.\nversion = 2\n"
	}
	hostsDir, text := checkConfigPath(o, p, cfg, version, old != nil, text)
	if imports, ok := cfg["imports"].([]any); ok && len(imports) > 0 {
		p.find(Finding{File: ContainerdConfig, Line: lineOf(old, "imports"),
			Problem: fmt.Sprintf("imports %v: a config_path or mirrors set there are not checked", imports),
			Fix:     "make sure no imported file sets another config_path"})
	}
	if o.StreamProcessor {
		text = replaceTable(text, []string{"stream_processors", gzipProcessor}, processorBlock(gzipProcessor, gzipLayerTypes, o.Decompressor))
		text = replaceTable(text, []string{"stream_processors", zstdProcessor}, processorBlock(zstdProcessor, zstdLayerTypes, o.Decompressor))
	}
	if o.EditConfig && text != string(old) {
		newCfg, err := parseTOML(ContainerdConfig+" (as edited)", []byte(text))
		if err != nil {
			return nil, fmt.Errorf("%w %s: the edit would not parse (%v); set config_path by hand", ErrEdit, ContainerdConfig, err)
		}
		if cp, _ := lookup(newCfg, append(registryTable(version), "config_path")...); cp != hostsDir {
			return nil, fmt.Errorf("%w %s: config_path is set in a form shoal does not edit; set it to %q by hand", ErrEdit, ContainerdConfig, hostsDir)
		}
		p.add(ContainerdConfig, old, []byte(text))
		p.Notes = append(p.Notes, "restart containerd for the config.toml change to take effect (shoal never restarts it)")
	}

	hosts := make([]string, 0, len(o.Registries)+1)
	bodies := make([][]byte, 0, len(o.Registries)+1)
	for _, r := range o.Registries {
		hosts = append(hosts, r.Host)
		bodies = append(bodies, hostsToml(o, r.Endpoint()))
	}
	if o.AllRegistries {
		hosts = append(hosts, "_default")
		bodies = append(bodies, hostsToml(o, ""))
		p.Notes = append(p.Notes, "--all-registries: the agent reaches the registries it was not given over HTTPS, as it does by default; an image of a registry the agent refuses falls back to the registry itself")
	}
	for i, h := range hosts {
		path := filepath.Join(hostsDir, h, "hosts.toml")
		cur, err := readFile(o, path)
		if err != nil {
			return nil, err
		}
		if cur != nil {
			if _, err := parseTOML(path, cur); err != nil {
				return nil, err
			}
			if !bytes.HasPrefix(cur, []byte(marker)) && !bytes.Equal(cur, bodies[i]) && !o.Force {
				p.find(Finding{File: path, Problem: "exists and was not written by shoal: kept as it is",
					Fix: "rerun with --force to replace it (the old one is backed up for --undo), or add the agent as its first [host] by hand"})
				continue
			}
		}
		p.add(path, cur, bodies[i])
	}
	p.Notes = append(p.Notes, "containerd reads hosts.toml on every pull: no restart is needed for those files",
		"dial_timeout takes effect from containerd 2.1 on; 1.6 and 1.7 wait up to 30 s for an agent that accepts no connection (a stopped one refuses at once)")
	return p, nil
}

// checkConfigPath runs the config_path checks and, with EditConfig, edits
// text so that config_path names one directory. It returns the directory
// the hosts.toml files go to.
func checkConfigPath(o Options, p *Plan, cfg map[string]any, version int64, exists bool, text string) (string, string) {
	table := registryTable(version)
	where := quoteHeader(table)
	cp, _ := lookup(cfg, append(table, "config_path")...)
	dirs := filepath.SplitList(fmt.Sprint(valueOr(cp, "")))
	local, _ := lookup(cfg, "plugins", "io.containerd.cri.v1.images", "use_local_image_pull")
	transfer := version == 3 && local != true

	for _, k := range []string{"mirrors", "configs"} {
		if _, ok := lookup(cfg, append(table, k)...); ok {
			p.find(Finding{File: ContainerdConfig, Line: lineOf([]byte(text), k),
				Problem: fmt.Sprintf("%s.%s is set: containerd does not combine it with config_path (1.x refuses to start)", where, k),
				Fix:     "move those settings into hosts.toml files and delete the section"})
		}
	}
	switch {
	case len(dirs) == 0:
		dir := defaultHostsDir
		if !exists && !o.EditConfig {
			p.find(Finding{File: ContainerdConfig, Problem: "missing: containerd 1.6 and 1.7 then read no hosts.toml at all (containerd 2.x's default config_path lists two directories, which its transfer service cannot read, containerd issue 12415)",
				Fix: fmt.Sprintf("rerun with --edit-config to write one, or write config_path = %q under %s yourself", dir, where)})
			return dir, text
		}
		if !o.EditConfig {
			problem := "config_path is not set: containerd 1.x reads no hosts.toml"
			if version == 3 {
				problem = "config_path is not set: containerd 2.x then uses /etc/containerd/certs.d:/etc/docker/certs.d, two directories, which its transfer service does not read (containerd issue 12415)"
			}
			p.find(Finding{File: ContainerdConfig, Problem: problem,
				Fix: fmt.Sprintf("set config_path = %q under %s (or rerun with --edit-config), then restart containerd", dir, where)})
			return dir, text
		}
		return dir, setKey(text, table, "config_path", tomlString(dir))
	case len(dirs) > 1:
		dir := dirs[0]
		problem := fmt.Sprintf("config_path lists several directories (%s): containerd 2.x's transfer service, which CRI pulls use by default, then reads hosts.toml from none of them (containerd issue 12415)", cp)
		if !o.EditConfig {
			p.find(Finding{File: ContainerdConfig, Line: lineOf([]byte(text), "config_path"), Problem: problem,
				Fix: fmt.Sprintf("set config_path = %q (or rerun with --edit-config), or set use_local_image_pull = true under [plugins.\"io.containerd.cri.v1.images\"]; shoal writes into %s", dir, dir)})
			return dir, text
		}
		p.Notes = append(p.Notes, problem+": config_path is set to its first directory, "+dir)
		return dir, setKey(text, table, "config_path", tomlString(dir))
	default:
		if transfer {
			p.Notes = append(p.Notes, "containerd 2.x pulls with its transfer service: it reads hosts.toml only while config_path names one directory, as now")
		}
		return dirs[0], text
	}
}

func valueOr(v any, def string) any {
	if v == nil {
		return def
	}
	return v
}

// lineOf is the 1-based line of the first line of data that starts with
// key (after indentation), or 0.
func lineOf(data []byte, key string) int {
	for i, l := range splitLines(string(data)) {
		s := strings.TrimLeft(l, " \t")
		if strings.HasPrefix(s, key) {
			return i + 1
		}
	}
	return 0
}

// hostsToml is a hosts.toml: the agent first (pull and resolve only, a
// short dial timeout), then server, the registry itself ("" for _default,
// where containerd falls back to the registry the image names).
func hostsToml(o Options, server string) []byte {
	var b strings.Builder
	b.WriteString(marker + ": containerd asks the Shoal agent first and the registry itself if the agent fails.\n")
	if server != "" {
		fmt.Fprintf(&b, "server = %s\n", tomlString(server))
	}
	timeout := o.DialTimeout
	if timeout == "" {
		timeout = defaultDialTimeout
	}
	fmt.Fprintf(&b, "\n[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n  dial_timeout = %s\n", tomlString(o.agentURL()), tomlString(timeout))
	return []byte(b.String())
}

func processorBlock(id string, accepts []string, path string) string {
	return fmt.Sprintf("%s\n  accepts = %s\n  returns = %s\n  path = %s\n  args = [\"decompress\"]\n",
		quoteHeader([]string{"stream_processors", id}), tomlStrings(accepts), tomlString(tarLayerType), tomlString(path))
}
