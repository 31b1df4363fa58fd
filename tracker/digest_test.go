package tracker_test

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
)

// The fast path of ValidateDigest agrees with digest.Validate.
func TestValidateDigestFastPath(t *testing.T) {
	t.Parallel()
	good := digest.FromString("x")
	for _, d := range []digest.Digest{good, digest.Digest(strings.ToUpper(string(good))), good[:70], good + "0", "sha512:" + good[7:], "sha256:" + good[8:] + "g", "sha256:", ""} {
		want := d.Validate() == nil && d.Algorithm() == digest.SHA256
		if got := tracker.ValidateDigest(d) == nil; got != want {
			t.Errorf("%q: valid %v, want %v", d, got, want)
		}
	}
}
