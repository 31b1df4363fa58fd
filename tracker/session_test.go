package tracker_test

import (
	"testing"
	"time"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// A session header from anyone is parsed without panicking, and only the
// MAC of the session's own key verifies.
func FuzzVerifySession(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_700_000_000, 0)
	id := trackertest.ID("fuzz")
	good, err := tracker.MACAnnounce(tracker.NewSession(secret, id, now), id, []byte("{}"), now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte("{}"))
	f.Add("id=x,e=1,t=1,mac=", []byte(""))
	f.Add("new", []byte("{}"))
	f.Fuzz(func(t *testing.T, h string, body []byte) {
		got, err := tracker.VerifySession(secret, h, body, now)
		if err == nil && (got != id || string(body) != "{}") {
			t.Fatalf("verified %q for %q, body %q", got, h, body)
		}
	})
}
