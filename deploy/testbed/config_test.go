package testbed

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := DefaultConfig()
	good.WorkDir, good.ShoalBin, good.CraneBin = "/tmp/x", "shoal", "crane"
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"prefix with a slash", func(c *Config) { c.Prefix = "a/b" }},
		{"prefix too long", func(c *Config) { c.Prefix = "abcdefghijklmnopq" }},
		{"no hosts", func(c *Config) { c.Hosts = 0 }},
		{"too many hosts", func(c *Config) { c.Hosts = MaxHosts + 1 }},
		{"public subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("8.8.0.0/16") }},
		{"wrong size", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.213.0.0/24") }},
		{"unmasked", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.213.1.0/16") }},
		{"zero rate", func(c *Config) { c.OriginRate = 0 }},
		{"negative queue", func(c *Config) { c.QueueDelay = -time.Millisecond }},
		{"no work dir", func(c *Config) { c.WorkDir = "" }},
		{"no crane", func(c *Config) { c.CraneBin = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := good
			tt.modify(&c)
			if err := c.Validate(); !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v, want ErrConfig", err)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	seen := map[netip.Addr]bool{c.originAddr(): true, c.trackerAddr(): true}
	for i := range MaxHosts {
		a := c.hostAddr(i)
		if !c.Subnet.Contains(a) || seen[a] || a == c.Subnet.Addr() {
			t.Fatalf("host %d: address %s is outside the subnet or taken", i, a)
		}
		seen[a] = true
	}
	if got := c.hostAddr(0).String(); got != "10.213.1.1" {
		t.Fatalf("first host at %s", got)
	}
}

func TestScenarioValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultScenario().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	seeded := DefaultScenario()
	seeded.Preseed = true
	if err := seeded.Validate(); err != nil {
		t.Fatalf("default with Preseed: %v", err)
	}
	// The seed's timeout matters only with Preseed.
	cold := DefaultScenario()
	cold.SeedTimeout = 0
	if err := cold.Validate(); err != nil {
		t.Fatalf("no seed timeout without Preseed: %v", err)
	}
	for _, modify := range []func(*Scenario){
		func(s *Scenario) { s.Layers = 0 },
		func(s *Scenario) { s.ImageSize = 10 },
		func(s *Scenario) { s.Repo = "Bad Repo" },
		func(s *Scenario) { s.SampleInterval = time.Microsecond },
		func(s *Scenario) { s.PullTimeout = 0 },
		func(s *Scenario) { s.Preseed, s.SeedTimeout = true, 0 },
	} {
		s := DefaultScenario()
		modify(&s)
		if err := s.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err %v, want ErrConfig", s, err)
		}
	}
}
