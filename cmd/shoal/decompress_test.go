package main

import (
	"bytes"
	"compress/gzip"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestDecompress(t *testing.T) {
	t.Parallel()
	data := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = "abcdefgh"[rng.IntN(8)]
	}
	var gz, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	ze, _ := zstd.NewWriter(&zs)
	ze.Write(data)
	ze.Close()

	tests := []struct {
		name, mediaType string
		in              []byte
		wantErr         string
	}{
		{"gzip", "application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes(), ""},
		{"gzip, docker media type", "application/vnd.docker.image.rootfs.diff.tar.gzip", gz.Bytes(), ""},
		{"gzip, no media type", "", gz.Bytes(), ""},
		{"zstd", "application/vnd.oci.image.layer.v1.tar+zstd", zs.Bytes(), ""},
		{"zstd said to be gzip", "application/vnd.oci.image.layer.v1.tar+gzip", zs.Bytes(), "stream is zstd"},
		{"plain tar", "", data[:1000], "neither gzip nor zstd"},
		{"empty", "", nil, "neither gzip nor zstd"},
		{"truncated gzip", "", gz.Bytes()[:gz.Len()/2], "decompress"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := runDecompress(bytes.NewReader(tt.in), &out, tt.mediaType)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("err %v, %d bytes out, want %d", err, out.Len(), len(data))
			}
		})
	}
}
