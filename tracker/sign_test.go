package tracker_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

func TestAnnounceSignature(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	body := []byte(`{"peer":{"id":"x","addrs":["/a"]},"blobs":[]}`)
	self, other := trackertest.ID("self"), trackertest.ID("other")
	sig, err := tracker.SignAnnounce(trackertest.Key("self"), body, now)
	if err != nil {
		t.Fatal(err)
	}
	rsa, _, err := crypto.GenerateRSAKeyPair(2048, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaID, err := libp2ppeer.IDFromPrivateKey(rsa) // a hash of the key: nothing to extract
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, _ := tracker.SignAnnounce(rsa, body, now)

	for _, tc := range []struct {
		name, header, id string
		body             []byte
		now              time.Time
		want             error
	}{
		{"good", sig, self, body, now, nil},
		{"good, clock 4m59s ahead", sig, self, body, now.Add(299 * time.Second), nil},
		{"good, clock 4m59s behind", sig, self, body, now.Add(-299 * time.Second), nil},
		{"stale", sig, self, body, now.Add(tracker.MaxSignatureSkew + time.Second), tracker.ErrStale},
		{"from the future", sig, self, body, now.Add(-tracker.MaxSignatureSkew - time.Second), tracker.ErrStale},
		{"another peer's ID", sig, other, body, now, tracker.ErrBadSignature},
		{"body changed", sig, self, append([]byte(" "), body...), now, tracker.ErrBadSignature},
		{"time changed", strings.Replace(sig, "t=", "t=1", 1), self, body, now, tracker.ErrStale},
		{"unsigned", "", self, body, now, tracker.ErrUnsigned},
		{"garbage header", "sig=abc,t=1", self, body, now, tracker.ErrUnsigned},
		{"fake peer ID", sig, "agent1", body, now, tracker.ErrNoPublicKey},
		{"RSA peer ID", rsaSig, rsaID.String(), body, now, tracker.ErrNoPublicKey},
	} {
		err := tracker.VerifyAnnounce(tc.header, tc.id, tc.body, tc.now)
		if !errors.Is(err, tc.want) || (tc.want != nil) != (err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if err != nil && !errors.Is(err, tracker.ErrUnauthorized) {
			t.Errorf("%s: %v does not wrap ErrUnauthorized", tc.name, err)
		}
	}
}

func TestParseSignature(t *testing.T) {
	t.Parallel()
	for _, h := range []string{
		"", "t=1", "sig=AA", "t=,sig=AA", "t=1,sig=", "t=-1,sig=AA", "t=+1,sig=AA", "t=1,sig=AA=",
		"t=1, sig=AA", "T=1,sig=AA", "t=1,sig=AA,x=1", "t=99999999999999999999,sig=AA",
		"t=1,sig=" + strings.Repeat("A", 600),
	} {
		if _, _, err := tracker.ParseSignature(h); !errors.Is(err, tracker.ErrUnsigned) {
			t.Errorf("ParseSignature(%q) = %v, want ErrUnsigned", h, err)
		}
	}
	if at, sig, err := tracker.ParseSignature("t=1735689600,sig=AAEC"); err != nil || at != 1735689600 || len(sig) != 3 {
		t.Errorf("good header: %d %v %v", at, sig, err)
	}
}

// FuzzParseSignature: any header value parses or wraps ErrUnsigned, never
// panics, and what parses is checked without panicking either.
func FuzzParseSignature(f *testing.F) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sig, err := tracker.SignAnnounce(trackertest.Key("p1"), []byte("{}"), now)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{sig, "", "t=1,sig=AA", "t=1,sig=AA==", "t=9223372036854775807,sig=AA", "t=0,sig=" + strings.Repeat("_", 86), ",", "t=,sig=", "t=0" + sig[2:]} {
		f.Add(s)
	}
	id := trackertest.ID("p1")
	f.Fuzz(func(t *testing.T, h string) {
		at, s, err := tracker.ParseSignature(h)
		if err != nil {
			if !errors.Is(err, tracker.ErrUnsigned) {
				t.Fatalf("ParseSignature(%q): %v, want ErrUnsigned", h, err)
			}
			return
		}
		if at < 0 || len(s) == 0 {
			t.Fatalf("ParseSignature(%q) = %d, %x", h, at, s)
		}
		err = tracker.VerifyAnnounce(h, id, []byte("{}"), now)
		if err != nil && !tracker.IsSignatureError(err) {
			t.Fatalf("VerifyAnnounce(%q): %v", h, err)
		}
		if err == nil && h != sig {
			t.Fatalf("VerifyAnnounce accepted %q, which is not the signature", h)
		}
	})
}

// BenchmarkVerifyAnnounce: the tracker's cost of checking one announce's
// signature (10,000 agents announcing every 2 s make 5,000 a second).
func BenchmarkVerifyAnnounce(b *testing.B) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	body := []byte(`{"peer":{"id":"x","addrs":["/ip4/10.0.0.1/tcp/4001"]},"blobs":[]}`)
	sig, err := tracker.SignAnnounce(trackertest.Key("p1"), body, now)
	if err != nil {
		b.Fatal(err)
	}
	id := trackertest.ID("p1")
	b.ReportAllocs()
	for b.Loop() {
		if err := tracker.VerifyAnnounce(sig, id, body, now); err != nil {
			b.Fatal(err)
		}
	}
}
