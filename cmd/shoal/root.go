package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "shoal",
		Short:         "Peer-to-peer distribution of container image layers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newTrackerCmd(), newDemoCmd(), newPullCmd(), newStatusCmd(), newSeedCmd(), newConfigureCmd(), newDecompressCmd())
	return root
}
