package p2p_test

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/shoal-dev/shoal/p2p"
)

// BenchmarkFetch measures piece throughput between two hosts on loopback:
// 4 MiB pieces, 1 and 8 requests in flight, for each transport setup.
func BenchmarkFetch(b *testing.B) {
	const size = 4 << 20
	setups := []struct {
		name   string
		mutate func(*p2p.Config)
	}{
		{"tls", nil},
		{"noise", func(c *p2p.Config) { c.Security = p2p.SecurityNoise }},
		{"tls+psk", func(c *p2p.Config) { c.PSK = bytes.Repeat([]byte{7}, 32) }},
	}
	for _, setup := range setups {
		for _, inflight := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/inflight=%d", setup.name, inflight), func(b *testing.B) {
				server, client := newNode(b, setup.mutate), newNode(b, setup.mutate)
				connect(b, client, server)
				info := server.src.AddBlob(randomBytes(b, size), size)
				ctx := b.Context()
				b.SetBytes(size)
				b.ReportAllocs()
				b.ResetTimer()
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				for range inflight {
					wg.Go(func() {
						buf := make([]byte, size)
						for left.Add(-1) >= 0 {
							var err error
							buf, err = client.Fetch(ctx, server.ID(), info.Digest, 0, info.Pieces[0], buf)
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

// BenchmarkRawStream is the baseline for BenchmarkFetch: 4 MiB written on a
// bare libp2p stream of the same setup, no protocol, no hashing.
func BenchmarkRawStream(b *testing.B) {
	const size = 4 << 20
	server, client := newNode(b, nil), newNode(b, nil)
	connect(b, client, server)
	data := randomBytes(b, size)
	const proto = "/shoal/bench/raw"
	server.LibP2P().SetStreamHandler(proto, func(s network.Stream) {
		s.Write(data)
		s.Close()
	})
	buf := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		s, err := client.LibP2P().NewStream(b.Context(), server.ID(), proto)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
