package main

import (
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/authn"
	_ "github.com/google/go-containerregistry/pkg/v1/random"
	_ "github.com/google/go-containerregistry/pkg/v1/mutate"
	_ "github.com/ipfs/go-cid"
	_ "github.com/klauspost/pgzip"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	_ "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "go.uber.org/goleak"
	_ "golang.org/x/time/rate"
)

var _ = 0
