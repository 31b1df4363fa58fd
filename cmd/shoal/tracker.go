package main

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/tracker/server"
)

type trackerFlags struct {
	nodeFlags        `mapstructure:",squash"`
	Token            string        `mapstructure:"token"`
	TokenFile        string        `mapstructure:"token-file"`
	AnnounceInterval time.Duration `mapstructure:"announce-interval"`
	MaxAnnounceRate  int           `mapstructure:"max-announce-rate"`
	TLSCert          string        `mapstructure:"tls-cert"`
	TLSKey           string        `mapstructure:"tls-key"`
	seedTrackerFlags `mapstructure:",squash"`
}

func newTrackerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tracker",
		Short: "Run the tracker and its seeder, which fetches each blob from the origin once",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	addNodeFlags(fs, "0.0.0.0:7070", defaultSeederConfig())
	fs.String("token", "", "cluster token agents must present")
	fs.String("token-file", "", "file holding the cluster tokens, one per line (several while one is rotated out)")
	fs.Duration("announce-interval", server.DefaultConfig().AnnounceInterval, "how often agents announce (at least: see --max-announce-rate)")
	fs.Int("max-announce-rate", server.DefaultConfig().MaxAnnounceRate, "announces a second asked of the whole swarm at most: with more than announce-interval × this many agents the interval grows with their number (0: fixed)")
	fs.String("tls-cert", "", "TLS certificate for the tracker API (with --tls-key)")
	fs.String("tls-key", "", "TLS key for the tracker API")
	addSeedTrackerFlags(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var f trackerFlags
		if err := loadConfig(cmd, &f); err != nil {
			return err
		}
		log, err := stderrLogger(f.logFlags)
		if err != nil {
			return err
		}
		tcfg, seed, err := f.config()
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", f.Listen)
		if err != nil {
			return err
		}
		if f.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
			if err != nil {
				return err
			}
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		}
		var seedToken string
		if len(tcfg.SeedTokens) > 0 {
			seedToken = tcfg.SeedTokens[0]
		}
		ropts, err := f.seedTrackerFlags.replicas(seedToken)
		if err != nil {
			return err
		}
		reg := newRegistry()
		node, err := newTrackerNode(tcfg, seed, log, reg, ropts...)
		if err != nil {
			return err
		}
		defer node.Close()
		log.Info("tracker listening", "addr", ln.Addr().String(), "upstream", seed.Upstream.Default, "seeder", node.seeder.peerID())
		return serve(cmd.Context(), ln, withMetrics(node.server.Handler(), reg), f.ShutdownTimeout, node.seeder.agent.Drain, log)
	}
	return cmd
}

// config is the tracker's and its seeder's configuration from the flags,
// checked.
func (f trackerFlags) config() (server.Config, nodeConfig, error) {
	tcfg := server.DefaultConfig()
	if f.Token != "" {
		tcfg.Tokens = append(tcfg.Tokens, f.Token)
	}
	if f.TokenFile != "" {
		toks, err := readTokens(f.TokenFile)
		if err != nil {
			return tcfg, nodeConfig{}, err
		}
		tcfg.Tokens = append(tcfg.Tokens, toks...)
	}
	if len(tcfg.Tokens) == 0 {
		return tcfg, nodeConfig{}, errors.New("a cluster token is required: --token, --token-file or SHOAL_TOKEN")
	}
	tcfg.AnnounceInterval = f.AnnounceInterval
	tcfg.PeerTTL = 3 * f.AnnounceInterval
	tcfg.MaxAnnounceRate = f.MaxAnnounceRate
	if err := f.seedTrackerFlags.apply(&tcfg); err != nil {
		return tcfg, nodeConfig{}, err
	}
	if err := tcfg.Validate(); err != nil {
		return tcfg, nodeConfig{}, err
	}
	seed, err := f.nodeFlags.config(defaultSeederConfig())
	if err != nil {
		return tcfg, seed, err
	}
	return tcfg, seed, seed.validate()
}
