package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// loadConfig fills cfg from, in rising precedence, its defaults, the file
// named by --config, SHOAL_* environment variables and the command's flags.
// Keys are the flag names; unknown keys in the file are an error.
func loadConfig(cmd *cobra.Command, cfg any) error {
	v := viper.New()
	v.SetEnvPrefix("SHOAL")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_", ".", "_"))
	v.AutomaticEnv()
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		bindErr = errors.Join(bindErr, v.BindPFlag(f.Name, f))
		bindErr = errors.Join(bindErr, v.BindEnv(f.Name))
	})
	if bindErr != nil {
		return bindErr
	}
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return v.UnmarshalExact(cfg, func(dc *mapstructure.DecoderConfig) {
		dc.TagName = "mapstructure"
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
}

// logFlags are shared by every long-running command.
type logFlags struct {
	Level  string `mapstructure:"log-level"`
	Format string `mapstructure:"log-format"`
}

func addLogFlags(fs *pflag.FlagSet) {
	fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.String("log-format", "text", "log format: text or json")
	fs.String("config", "", "config file (YAML, TOML or JSON); keys are the flag names")
}

func (l logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, fmt.Errorf("log-level %q: %w", l.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format %q: want text or json", l.Format)
}

// stderrLogger makes the process's logger and routes libp2p's own logs
// into it, so that one handler and one level govern everything.
func stderrLogger(l logFlags) (*slog.Logger, error) {
	log, err := l.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	gologshim.SetDefaultHandler(log.With("component", "libp2p").Handler())
	return log, nil
}
