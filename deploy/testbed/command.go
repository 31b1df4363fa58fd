package testbed

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Command prepares a run of one of the testbed's commands (cmd/testbed,
// cmd/faults): it makes the output directory, sets cfg.WorkDir to work or,
// when work is "", to a new temporary directory that cleanup removes,
// checks cfg, and returns a context that ends on the first SIGINT or
// SIGTERM (a second one ends the process even in the middle of cleanup),
// once the machine was probed for what a bed needs.
func Command(cfg *Config, out, work, tmpPrefix string) (ctx context.Context, cleanup func(), err error) {
	cleanup = func() {}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, cleanup, err
	}
	if work == "" {
		dir, err := os.MkdirTemp("", tmpPrefix)
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		work = dir
	}
	cfg.WorkDir = work
	if err := cfg.Validate(); err != nil {
		cleanup()
		return nil, func() {}, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the default handling is back: a second signal ends the process
	}()
	removeWork := cleanup
	cleanup = func() { stop(); removeWork() }
	if err := Probe(ctx, cfg.Prefix); err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return ctx, cleanup, nil
}
