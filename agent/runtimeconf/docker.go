package runtimeconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// DockerDaemonJSON is dockerd's configuration file, as a host path.
const DockerDaemonJSON = "/etc/docker/daemon.json"

// Docker plans the agent as the first of dockerd's registry-mirrors,
// keeping every other key of daemon.json byte for byte. Docker only ever
// asks a mirror for Docker Hub images.
func Docker(o Options) (*Plan, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.AllRegistries || o.EditConfig || o.StreamProcessor {
		return nil, fmt.Errorf("%w: --all-registries, --edit-config and --stream-processor are containerd's", ErrOptions)
	}
	if err := requireDir(o, "/etc/docker", "Docker"); err != nil {
		return nil, err
	}
	p := &Plan{Runtime: "docker"}
	for _, r := range o.Registries {
		if r.Host != "docker.io" {
			p.find(Finding{File: DockerDaemonJSON, Problem: fmt.Sprintf("registry %s: Docker mirrors only Docker Hub, so its pulls from %s do not reach the agent", r.Host, r.Host),
				Fix: "pull those images by the agent's address, or use containerd"})
		}
	}
	mirror := o.agentURL()
	cur, err := readFile(o, DockerDaemonJSON)
	if err != nil {
		return nil, err
	}
	next, err := mergeMirror(cur, mirror)
	if err != nil {
		return nil, err
	}
	if u, _ := url.Parse(mirror); u.Scheme == "http" && !strings.HasPrefix(u.Hostname(), "127.") && u.Hostname() != "localhost" && u.Hostname() != "::1" {
		p.find(Finding{File: DockerDaemonJSON, Problem: "the agent is plain HTTP on a non-loopback address: Docker refuses such a mirror",
			Fix: fmt.Sprintf("add %q to insecure-registries, or reach the agent on 127.0.0.1", u.Host)})
	}
	p.add(DockerDaemonJSON, cur, next)
	p.Notes = append(p.Notes, "Docker mirrors only Docker Hub (docker.io): images of other registries are pulled from them directly",
		"reload dockerd for the change (systemctl reload docker, SIGHUP; registry-mirrors is reloadable): shoal never restarts it")
	return p, nil
}

// mergeMirror puts mirror first in daemon.json's registry-mirrors, editing
// only that key's value (or adding the key after the opening brace).
func mergeMirror(cur []byte, mirror string) ([]byte, error) {
	if len(bytes.TrimSpace(cur)) == 0 {
		return []byte(fmt.Sprintf("{\n  \"registry-mirrors\": [%q]\n}\n", mirror)), nil
	}
	dec := json.NewDecoder(bytes.NewReader(cur))
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(cur, dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w %s:1: not a JSON object", ErrParse, DockerDaemonJSON)
	}
	open := dec.InputOffset()
	var valStart, valEnd int64 = -1, -1
	var mirrors []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, jsonError(cur, dec, err)
		}
		key, _ := k.(string)
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, jsonError(cur, dec, err)
		}
		if key == "registry-mirrors" {
			if err := json.Unmarshal(raw, &mirrors); err != nil {
				return nil, fmt.Errorf("%w %s:%d: registry-mirrors is not a list of strings", ErrParse, DockerDaemonJSON, lineAt(cur, start))
			}
			valStart, valEnd = start, dec.InputOffset()
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, jsonError(cur, dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w %s:%d: data after the object", ErrParse, DockerDaemonJSON, lineAt(cur, dec.InputOffset()))
	}
	if valStart >= 0 {
		if len(mirrors) > 0 && strings.TrimRight(mirrors[0], "/") == mirror {
			return cur, nil
		}
		list := []string{mirror}
		for _, m := range mirrors {
			if strings.TrimRight(m, "/") != mirror {
				list = append(list, m)
			}
		}
		q, _ := json.Marshal(list)
		q = bytes.ReplaceAll(q, []byte(`","`), []byte(`", "`))
		// The value starts after ':' and its whitespace.
		colon := bytes.IndexByte(cur[valStart:valEnd], ':')
		rest := cur[valStart+int64(colon)+1 : valEnd]
		ws := rest[:len(rest)-len(bytes.TrimLeft(rest, " \t\r\n"))]
		out := append([]byte{}, cur[:valStart+int64(colon)+1]...)
		out = append(out, ws...)
		out = append(out, q...)
		return append(out, cur[valEnd:]...), nil
	}
	entry := fmt.Sprintf("\n  \"registry-mirrors\": [%q]", mirror)
	rest := cur[open:]
	if len(bytes.TrimSpace(rest)) > 0 && bytes.TrimSpace(rest)[0] != '}' {
		entry += ","
	} else {
		entry += "\n"
		rest = bytes.TrimLeft(rest, " \t\r\n")
	}
	out := append([]byte{}, cur[:open]...)
	out = append(out, entry...)
	return append(out, rest...), nil
}

func jsonError(data []byte, dec *json.Decoder, err error) error {
	off := dec.InputOffset()
	// A whole-file decode gives the syntax error's offset in the file.
	var v any
	var se *json.SyntaxError
	if e := json.Unmarshal(data, &v); errors.As(e, &se) {
		off, err = se.Offset, e
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		off = int64(len(data))
	}
	return fmt.Errorf("%w %s:%d: %v", ErrParse, DockerDaemonJSON, lineAt(data, off), err)
}

func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return bytes.Count(data[:off], []byte("\n")) + 1
}
