#!/usr/bin/env bash
# Installs what the end-to-end tests (deploy/e2e) need on a fresh Debian
# machine: an origin registry (docker-registry), the real clients (skopeo,
# crane, containerd's ctr, podman), iproute2 for network namespaces and apache2-utils;
# for deploy/systemd, systemd-analyze (systemd) and strace; for the image
# (deploy/image), the CA bundle it copies (ca-certificates); for the tracker's
# status page test, headless Chromium (chromium).
#
# Run as root from anywhere inside the repository. Idempotent and quiet: when
# everything is present it only checks and exits.
set -euo pipefail

die() {
	echo "deps.sh: $*" >&2
	exit 1
}

apt_packages=(docker-registry skopeo containerd podman iproute2 apache2-utils systemd strace ca-certificates chromium)

missing=()
for pkg in "${apt_packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} > 0)); then
	[[ $(id -u) -eq 0 ]] || die "need root to install: ${missing[*]}"
	command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install failed for: ${missing[*]}"
fi

# Debian's docker-registry package starts a system service on install; the
# tests start their own registries on free ports, so the service is not needed
# but is harmless. Only check the binary is where the harness looks for it.
[[ -x /usr/bin/docker-registry ]] || die "/usr/bin/docker-registry missing after install"
[[ -x /usr/bin/containerd ]] || die "/usr/bin/containerd missing after install"

command -v go >/dev/null || die "go not found in PATH (needed to install crane)"
gobin=$(go env GOBIN)
[[ -n $gobin ]] || gobin="$(go env GOPATH)/bin"

if [[ ! -x $gobin/crane ]]; then
	# Use the go-containerregistry version pinned in go.mod so crane matches
	# the library the harness pushes with.
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	version=$(cd "$here/.." && go list -m -f '{{.Version}}' github.com/google/go-containerregistry 2>/dev/null) ||
		die "cannot read the go-containerregistry version from go.mod"
	[[ -n $version ]] || die "empty go-containerregistry version in go.mod"
	if ! out=$(go install "github.com/google/go-containerregistry/cmd/crane@$version" 2>&1); then
		echo "$out" >&2
		die "go install crane@$version failed"
	fi
fi

"$gobin/crane" version >/dev/null 2>&1 || die "$gobin/crane does not run"
