package conf

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
)

// Distribution returns a docker-registry config: filesystem storage under
// root, listening on addr, quiet logs, deletes allowed. auth, if not empty,
// is an `auth:` section appended as is (htpasswd or token).
func Distribution(root, addr, auth string) string {
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	return fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: %q
health:
  storagedriver:
    enabled: false
%s`, root, addr, hex.EncodeToString(secret[:]), auth)
}

// Containerd returns a private containerd config: its own root, state and
// socket, the CRI plugin disabled, so that nothing of the machine's own
// containerd is touched.
func Containerd(root, state, sock string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, root, state, sock, filepath.Join(root, "opt"))
}
