package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/agent/runtimeconf"
)

type configureFlags struct {
	Agent           string   `mapstructure:"agent"`
	Registry        []string `mapstructure:"registry"`
	AllRegistries   bool     `mapstructure:"all-registries"`
	Root            string   `mapstructure:"root"`
	DryRun          bool     `mapstructure:"dry-run"`
	Undo            bool     `mapstructure:"undo"`
	Force           bool     `mapstructure:"force"`
	EditConfig      bool     `mapstructure:"edit-config"`
	StreamProcessor bool     `mapstructure:"stream-processor"`
	ShoalPath       string   `mapstructure:"shoal-path"`
	DialTimeout     string   `mapstructure:"dial-timeout"`
}

func newConfigureCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "configure containerd|crio|podman|docker",
		Short: "Point a container runtime at the Shoal agent, with the registry itself as the fallback",
		Long: `Point a container runtime at the Shoal agent, with the registry itself as the fallback.

containerd: a certs.d/<registry>/hosts.toml per --registry (and _default with
--all-registries) in the directory its config_path names, the agent first.
config.toml is only checked, and edited only with --edit-config.
crio, podman: the drop-in /etc/containers/registries.conf.d/shoal.conf.
docker: the agent first in daemon.json's registry-mirrors (Docker Hub only).

Paths are the host's, under --root. Every change is backed up for --undo;
--dry-run prints the diff and writes nothing; a second run changes nothing.
No runtime is ever restarted.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"containerd", "crio", "podman", "docker"},
	}
	fs := cmd.Flags()
	fs.String("agent", "http://"+defaultAgent, "the agent's registry URL")
	fs.StringSlice("registry", nil, "registry HOST[=URL] to send through the agent, URL being the registry's own scheme://host[:port] for the fallback (repeatable)")
	fs.Bool("all-registries", false, "containerd: every registry through the agent (certs.d/_default)")
	fs.String("root", "/", "where the host's / is (the chart's init container uses /host)")
	fs.Bool("dry-run", false, "print the diff and write nothing")
	fs.Bool("undo", false, "restore every file an earlier run changed, exactly")
	fs.Bool("force", false, "replace a hosts.toml or drop-in that shoal did not write")
	fs.Bool("edit-config", false, "containerd: edit config.toml (config_path, stream processors), keeping everything else byte for byte")
	fs.Bool("stream-processor", false, "containerd, with --edit-config: unpack gzip and zstd layers with `shoal decompress` (parallel gzip)")
	fs.String("shoal-path", "", "the host's path of the shoal binary for --stream-processor (default: this binary's, with --root /)")
	fs.String("dial-timeout", "", "containerd: how long to wait for the agent before the next host (default 300ms)")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var f configureFlags
		if err := loadConfig(cmd, &f); err != nil {
			return err
		}
		return runConfigure(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], f)
	}
	return cmd
}

func runConfigure(out, errw io.Writer, runtime string, f configureFlags) error {
	switch runtime {
	case "containerd", "crio", "podman", "docker":
	default:
		return fmt.Errorf("configure: unknown runtime %q: want containerd, crio, podman or docker", runtime)
	}
	o := runtimeconf.Options{
		Root: f.Root, Agent: f.Agent, AllRegistries: f.AllRegistries, Force: f.Force,
		EditConfig: f.EditConfig, StreamProcessor: f.StreamProcessor, Decompressor: f.ShoalPath,
		DialTimeout: f.DialTimeout,
	}
	for _, r := range f.Registry {
		host, u, _ := strings.Cut(r, "=")
		o.Registries = append(o.Registries, runtimeconf.Registry{Host: strings.ToLower(host), URL: u})
	}
	if o.StreamProcessor && o.Decompressor == "" {
		if filepath.Clean(f.Root) != "/" {
			return fmt.Errorf("configure: --stream-processor with --root %s: give --shoal-path, the host's path of shoal", f.Root)
		}
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("configure: this binary's path: %w", err)
		}
		if o.Decompressor, err = filepath.EvalSymlinks(exe); err != nil {
			return fmt.Errorf("configure: this binary's path: %w", err)
		}
	}
	if f.Undo {
		if f.DryRun {
			return fmt.Errorf("configure: --undo and --dry-run together: undo has nothing to preview beyond what it restores")
		}
		restored, err := runtimeconf.Undo(o, runtime)
		if errors.Is(err, runtimeconf.ErrNothingToUndo) {
			// Not a failure: undo is run on every agent stop, also after a
			// run that found everything in place and recorded nothing.
			fmt.Fprintln(out, err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("configure %s --undo: %w", runtime, err)
		}
		for _, c := range restored {
			if c.New == nil {
				fmt.Fprintf(out, "removed %s\n", c.Path)
			} else {
				fmt.Fprintf(out, "restored %s\n", c.Path)
			}
		}
		if len(restored) == 0 {
			fmt.Fprintln(out, "nothing to restore: every file is as it was")
		}
		return nil
	}

	var plan *runtimeconf.Plan
	var err error
	switch runtime {
	case "containerd":
		plan, err = runtimeconf.Containerd(o)
	case "crio", "podman":
		plan, err = runtimeconf.Registries(o, runtime)
	case "docker":
		plan, err = runtimeconf.Docker(o)
	}
	if err != nil {
		return fmt.Errorf("configure %s: %w", runtime, err)
	}
	for _, fd := range plan.Findings {
		fmt.Fprintf(errw, "warning: %s\n", fd)
	}
	if f.DryRun {
		fmt.Fprint(out, plan.Diff())
		if len(plan.Changes) == 0 {
			fmt.Fprintln(errw, "dry run: nothing would change")
		}
		return nil
	}
	if err := runtimeconf.Apply(o, plan); err != nil {
		return fmt.Errorf("configure %s: nothing was changed: %w", runtime, err)
	}
	for _, c := range plan.Changes {
		fmt.Fprintf(out, "wrote %s\n", c.Path)
	}
	if len(plan.Changes) == 0 {
		fmt.Fprintln(out, "nothing to change: already configured")
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(errw, "note: %s\n", n)
	}
	return nil
}
