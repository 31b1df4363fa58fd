package upstream

// Configured reports whether host names a registry of Config.Registries,
// under the same canonical name
// as the lookups ("index.docker.io" is "docker.io"). The agent serves the
// registry-in-path form /v2/<host>/<repo>/... for exactly these hosts:
// registries reached only through AllowUnknown are not guessed from a path.
func (c *Client) Configured(host string) bool {
	key, err := registryKey(host)
	if err != nil {
		return false
	}
	_, ok := c.table[key]
	return ok
}
