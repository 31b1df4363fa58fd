package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("invalid upstream config")

// Registry is one upstream registry, looked up by the host name a runtime
// names in containerd's ?ns= parameter.
type Registry struct {
	// Host is the key, e.g. "docker.io", "ghcr.io", "127.0.0.1:15000".
	Host string
	// Endpoint optionally overrides where Host is reached, as a URL without
	// a path: "http://127.0.0.1:15000", "https://mirror.example:5000".
	Endpoint string
	// Insecure allows plain HTTP. An http:// Endpoint requires it.
	Insecure bool
	// Username and Password are basic credentials, sent as is or exchanged
	// for a bearer token. When empty, the docker config is consulted.
	Username, Password string
	// Credentials is whose credentials authorise requests to this
	// registry (see Mode); ModeAuto takes Config.Credentials.
	Credentials Mode
}

// Config configures a Client.
type Config struct {
	// Default is the upstream for requests that name no registry: either a
	// URL ("http://127.0.0.1:15000") or the Host of an entry in Registries.
	// A URL here may be http://: naming it is the operator's consent to
	// plain HTTP, since Default has no Insecure flag of its own.
	// Empty means such requests fail with NAME_UNKNOWN.
	Default    string
	Registries []Registry
	// DockerConfig is the path of a docker config.json holding credentials;
	// "" uses the default keychain (DOCKER_CONFIG, ~/.docker/config.json,
	// podman's auth.json).
	DockerConfig string
	// Timeout bounds connecting and waiting for response headers, a whole
	// manifest or tags request, and the silence tolerated in a blob body
	// (a blob may take longer than Timeout as long as bytes keep coming).
	Timeout time.Duration
	// AllowUnknown lets requests reach registries not in Registries, over
	// HTTPS and with docker config credentials, as containerd mirrors do.
	// When false such requests fail with DENIED.
	AllowUnknown bool
	// Credentials is the mode of registries that set none, the default
	// upstream and unknown registries included. ModeAuto: node for a
	// registry with node credentials, requester for the others.
	Credentials Mode
}

// DefaultConfig returns a Config with no upstream, a 30 s timeout and
// unknown registries allowed.
func DefaultConfig() Config {
	return Config{
		Timeout:      30 * time.Second,
		AllowUnknown: true,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.Timeout <= 0 {
		return fmt.Errorf("%w: timeout %s must be positive", ErrConfig, c.Timeout)
	}
	if _, err := ParseMode(string(c.Credentials)); err != nil {
		return err
	}
	seen := make(map[string]bool, len(c.Registries))
	for i, r := range c.Registries {
		key, err := registryKey(r.Host)
		if err != nil {
			return fmt.Errorf("%w: registries[%d]: %w", ErrConfig, i, err)
		}
		if seen[key] {
			return fmt.Errorf("%w: registries[%d]: host %q listed twice", ErrConfig, i, r.Host)
		}
		seen[key] = true
		if r.Endpoint != "" {
			scheme, _, err := parseEndpoint(r.Endpoint)
			if err != nil {
				return fmt.Errorf("%w: registries[%d] (%s): %w", ErrConfig, i, r.Host, err)
			}
			if scheme == "http" && !r.Insecure {
				return fmt.Errorf("%w: registries[%d] (%s): endpoint %q is plain HTTP but insecure is not set", ErrConfig, i, r.Host, r.Endpoint)
			}
		}
		if _, err := ParseMode(string(r.Credentials)); err != nil {
			return fmt.Errorf("registries[%d] (%s): %w", i, r.Host, err)
		}
		if r.Username != "" && r.Credentials == ModeRequester {
			return fmt.Errorf("%w: registries[%d] (%s): a username in requester mode would never be used", ErrConfig, i, r.Host)
		}
		if (r.Username == "") != (r.Password == "") {
			return fmt.Errorf("%w: registries[%d] (%s): username and password go together", ErrConfig, i, r.Host)
		}
	}
	if c.Default != "" {
		if strings.Contains(c.Default, "://") {
			if _, _, err := parseEndpoint(c.Default); err != nil {
				return fmt.Errorf("%w: default: %w", ErrConfig, err)
			}
		} else {
			key, err := registryKey(c.Default)
			if err != nil {
				return fmt.Errorf("%w: default: %w", ErrConfig, err)
			}
			if !seen[key] {
				return fmt.Errorf("%w: default %q is neither a URL nor the host of a listed registry", ErrConfig, c.Default)
			}
		}
	}
	return nil
}

// registryKey canonicalises a registry host name so "docker.io" and
// "index.docker.io" (and letter case) name the same entry.
func registryKey(host string) (string, error) {
	if host == "" {
		return "", errors.New("empty registry host")
	}
	reg, err := name.NewRegistry(strings.ToLower(host), name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("registry host %q: %w", host, err)
	}
	return reg.RegistryStr(), nil
}

// parseEndpoint splits an endpoint URL into its scheme and host[:port].
func parseEndpoint(raw string) (scheme, host string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("endpoint %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("endpoint %q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("endpoint %q: want scheme://host[:port]", raw)
	}
	if u.Path != "" && u.Path != "/" {
		// The registry API lives at /v2/ of the host; ggcr's auth would not
		// follow a prefix, so refuse it rather than half-work.
		return "", "", fmt.Errorf("endpoint %q: a path prefix is not supported", raw)
	}
	if _, err := name.NewRegistry(u.Host, name.StrictValidation); err != nil {
		return "", "", fmt.Errorf("endpoint %q: %w", raw, err)
	}
	return u.Scheme, u.Host, nil
}
