package upstream

import (
	"io"
	"testing"
)

// BenchmarkBlob measures streaming a blob through the client over loopback
// (auth layer, idle timer and byte counting included).
func BenchmarkBlob(b *testing.B) {
	origin := newOrigin()
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	d := pushBlob(b, origin, "bench", data)
	c := newClient(b, testConfig(serve(b, origin).URL))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rc, err := c.Blob(b.Context(), "", "bench", d, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}
