package runtimeconf

import (
	"fmt"
	"net/url"
	"strings"
)

// RegistriesDropIn is the drop-in CRI-O and podman (containers/image) read
// after /etc/containers/registries.conf, as a host path.
const RegistriesDropIn = "/etc/containers/registries.conf.d/shoal.conf"

// Registries plans the registries.conf drop-in of containers/image, which
// CRI-O and podman (runtime names the backup record) read: a [[registry]]
// per registry with the agent as its [[registry.mirror]]. containers/image
// sends a mirror no ?ns=, so the mirror's location names the registry in
// its path (127.0.0.1:5050/docker.io), the form the agent serves for its
// configured registries.
func Registries(o Options, runtime string) (*Plan, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := o.requireRegistries(); err != nil {
		return nil, err
	}
	if o.AllRegistries {
		return nil, fmt.Errorf("%w: --all-registries is containerd's (registries.conf has no catch-all mirror): name each --registry", ErrOptions)
	}
	if o.EditConfig || o.StreamProcessor {
		return nil, fmt.Errorf("%w: --edit-config and --stream-processor are containerd's", ErrOptions)
	}
	if err := requireDir(o, "/etc/containers", runtime); err != nil {
		return nil, err
	}
	p := &Plan{Runtime: runtime}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s asks the Shoal agent (%s) first for these registries, the registry itself if the agent fails.\n", marker, runtime, o.agentURL())
	agent := o.agentHostPort()
	agentInsecure := strings.HasPrefix(o.Agent, "http://")
	for _, r := range o.Registries {
		if strings.Contains(r.Host, ":") {
			return nil, fmt.Errorf("%w: registry %s: containers/image cannot name a registry with a port in a mirror's path (%s/%s is no valid reference); use the agent directly for it", ErrOptions, r.Host, agent, r.Host)
		}
		location, insecure := r.Host, false
		if r.URL != "" {
			u, _ := url.Parse(r.URL)
			location, insecure = u.Host, u.Scheme == "http"
		}
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %s\nlocation = %s\n", tomlString(r.Host), tomlString(location))
		if insecure {
			b.WriteString("insecure = true\n")
		}
		fmt.Fprintf(&b, "\n[[registry.mirror]]\nlocation = %s\n", tomlString(agent+"/"+r.Host))
		if agentInsecure {
			b.WriteString("insecure = true\n")
		}
	}
	cur, err := readFile(o, RegistriesDropIn)
	if err != nil {
		return nil, err
	}
	if cur != nil {
		if _, err := parseTOML(RegistriesDropIn, cur); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(string(cur), marker) && !o.Force {
			p.find(Finding{File: RegistriesDropIn, Problem: "exists and was not written by shoal: kept as it is",
				Fix: "rerun with --force to replace it (the old one is backed up for --undo)"})
			return p, nil
		}
	}
	main, err := readFile(o, "/etc/containers/registries.conf")
	if err != nil {
		return nil, err
	}
	if main != nil {
		m, err := parseTOML("/etc/containers/registries.conf", main)
		if err != nil {
			return nil, err
		}
		if v, ok := m["version"]; ok && fmt.Sprint(v) == "1" {
			p.find(Finding{File: "/etc/containers/registries.conf", Line: lineOf(main, "version"),
				Problem: "is in the old v1 format, which containers/image cannot mix with v2 drop-ins",
				Fix:     "convert it to the v2 format ([[registry]] tables)"})
		}
	}
	p.add(RegistriesDropIn, cur, []byte(b.String()))
	switch runtime {
	case "crio":
		p.Notes = append(p.Notes, "CRI-O reads registries.conf when it starts: reload it (systemctl reload crio, SIGHUP) for the drop-in to take effect")
	default:
		p.Notes = append(p.Notes, "podman reads registries.conf on every command: no restart is needed")
	}
	return p, nil
}
