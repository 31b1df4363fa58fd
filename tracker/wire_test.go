package tracker

import (
	"testing"
)

func TestStatusRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range codes {
		code, status := StatusOf(c.err)
		if code != c.code || errorOf(status) != c.err {
			t.Errorf("%v: code %s status %d maps back to %v", c.err, code, status, errorOf(status))
		}
	}
}
