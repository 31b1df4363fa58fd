package main

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/tracker"
)

// TestReplicaSelf: --replica-self names its tracker among the replicas by
// its URL, by ADDRESS:PORT or by a pod's bare IP for a dns+ name; a name
// that is none of them, or an IP two replicas share, is no replica.
func TestReplicaSelf(t *testing.T) {
	eps := []tracker.Endpoint{{Name: "10.0.0.1:7070"}, {Name: "10.0.0.2:7070"}, {Name: "[fd00::3]:7070"}, {Name: "https://t-0.trackers:7070"}}
	for self, want := range map[string]string{
		"10.0.0.2:7070":             "10.0.0.2:7070",
		"10.0.0.1":                  "10.0.0.1:7070",
		"fd00::3":                   "[fd00::3]:7070",
		"https://t-0.trackers:7070": "https://t-0.trackers:7070",
		"10.0.0.9":                  "",
		"t-0.trackers":              "",
	} {
		if got := selfIn(eps, self); got != want {
			t.Errorf("selfIn(%q) = %q, want %q", self, got, want)
		}
	}
	shared := append(eps, tracker.Endpoint{Name: "10.0.0.1:7071"})
	if got := selfIn(shared, "10.0.0.1"); got != "" {
		t.Errorf("an IP two replicas share stood for %q, want none", got)
	}
	if _, err := newWebhookReplicas([]string{"http://a:1"}, "", "tok"); err == nil || !strings.Contains(err.Error(), "--replica-self") {
		t.Errorf("no --replica-self: %v", err)
	}
	if _, err := newWebhookReplicas([]string{"http://a:1"}, "http://a:1", ""); err == nil || !strings.Contains(err.Error(), "--seed-token-file") {
		t.Errorf("no seed token: %v", err)
	}
}
