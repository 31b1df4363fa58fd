// Package runtimeconf points a node's container runtime at the Shoal agent:
// it plans the file changes `shoal configure` makes for containerd, CRI-O,
// podman and Docker, checks the runtime's configuration for what would keep
// the agent from being asked, and applies or undoes a plan atomically.
//
//	Options ──Containerd/Registries/Docker──▶ Plan{Changes, Findings}
//	Plan ──Diff──▶ unified diff (--dry-run)
//	Plan ──Apply──▶ temp files, backup record, renames (nothing written on error)
//	Undo ──▶ every file of the backup record restored byte for byte
//
// Every path in a Plan is the host's path (/etc/containerd/config.toml);
// Options.Root is where the host's / is mounted, so the chart's init
// container writes into the node with Root "/host". Edits of a runtime's
// own configuration files are targeted text edits: every byte outside the
// edited lines stays as it was. The package never restarts a runtime.
package runtimeconf
