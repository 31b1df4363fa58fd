package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("testbed: bad config")

// MaxHosts bounds Config.Hosts: every host is a namespace with its own
// processes, and the machine this runs on has a few cores.
const MaxHosts = 500

// Config describes the network and where the binaries are. Rates are in
// bytes per second.
type Config struct {
	// Prefix starts the name of every namespace the bed creates; leftovers
	// with this prefix are removed at Start. Two beds running at once need
	// different prefixes.
	Prefix string
	// Hosts is how many agent hosts the bed has.
	Hosts int
	// Subnet holds every address; it must be a private IPv4 /16 that is
	// only used inside these namespaces.
	Subnet netip.Prefix
	// HostUpload and HostDownload cap each agent host's link.
	HostUpload, HostDownload int64
	// OriginRate caps the origin's link in both directions.
	OriginRate int64
	// TrackerRate caps the tracker's link in both directions.
	TrackerRate int64
	// QueueDelay bounds each capped link's queue to this much time at its
	// rate (a byte FIFO under the HTB class). Zero keeps the kernel's
	// default, a FIFO of txqueuelen packets: with GSO that can hold
	// seconds of data and delays every request queued behind uploads.
	QueueDelay time.Duration
	// WorkDir holds registry storage, agent data, pulled images and logs.
	WorkDir string
	// ShoalBin, RegistryBin and CraneBin are the programs the bed runs.
	ShoalBin, RegistryBin, CraneBin string
}

// MBps is one megabyte (10^6 bytes) per second, the unit of the command's
// flags.
const MBps = 1_000_000

// DefaultConfig is 20 hosts, origin and tracker, all at 20 MB/s.
func DefaultConfig() Config {
	return Config{
		Prefix:       "shoalbed-",
		Hosts:        20,
		Subnet:       netip.MustParsePrefix("10.213.0.0/16"),
		HostUpload:   20 * MBps,
		HostDownload: 20 * MBps,
		OriginRate:   20 * MBps,
		TrackerRate:  20 * MBps,
		RegistryBin:  "/usr/bin/docker-registry",
	}
}

// prefixRE keeps namespace names short and safe to pass to ip(8).
var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,15}$`)

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case !prefixRE.MatchString(c.Prefix):
		return fmt.Errorf("%w: prefix %q: want 2-16 of [a-z0-9-], starting with a letter", ErrConfig, c.Prefix)
	case c.Hosts < 1 || c.Hosts > MaxHosts:
		return fmt.Errorf("%w: hosts %d: want 1..%d", ErrConfig, c.Hosts, MaxHosts)
	case !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || !c.Subnet.Addr().IsPrivate() || c.Subnet.Bits() != 16 || c.Subnet.Masked() != c.Subnet:
		return fmt.Errorf("%w: subnet %s: want a private IPv4 /16 such as 10.213.0.0/16", ErrConfig, c.Subnet)
	case c.HostUpload <= 0 || c.HostDownload <= 0 || c.OriginRate <= 0 || c.TrackerRate <= 0:
		return fmt.Errorf("%w: every rate must be positive", ErrConfig)
	case c.QueueDelay < 0:
		return fmt.Errorf("%w: queue delay %s", ErrConfig, c.QueueDelay)
	case c.WorkDir == "":
		return fmt.Errorf("%w: no work directory", ErrConfig)
	case c.ShoalBin == "" || c.RegistryBin == "" || c.CraneBin == "":
		return fmt.Errorf("%w: shoal, docker-registry and crane binaries are all required", ErrConfig)
	}
	return nil
}

// addr returns the n-th address of the subnet (n ≥ 1).
func (c Config) addr(n int) netip.Addr {
	a := c.Subnet.Addr().As4()
	a[2] = byte(n >> 8)
	a[3] = byte(n)
	return netip.AddrFrom4(a)
}

// Addresses: the origin and tracker sit in x.x.0.0/24, hosts from x.x.1.1 on.
func (c Config) originAddr() netip.Addr    { return c.addr(2) }
func (c Config) trackerAddr() netip.Addr   { return c.addr(3) }
func (c Config) hostAddr(i int) netip.Addr { return c.addr(257 + i) }
