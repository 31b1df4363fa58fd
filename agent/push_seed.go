package agent

import (
	"context"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/tracker"
)

// seedFiller is how the seeder fills a blob it lacks: from the agents the
// tracker says hold it whole, when there are some, else from the origin.
// A blob pushed through an agent (push.go) is held by that agent before
// anyone asks the tracker for it: the seeder takes it from there, so the
// origin sends it once, to the pusher's agent, and never again. Pieces the
// holders cannot give come from the origin, as in any stalled download.
func (a *Agent) seedFiller(ctx context.Context, repo registryshim.Repo, src tracker.Source, size int64) store.Filler {
	origin := a.upstreamFiller(repo, src.Digest)
	if a.swarm == nil {
		return origin
	}
	info := a.swarm.FromHolders(ctx, src.Digest)
	if info == nil || info.Size != size {
		return origin
	}
	return a.swarm.Filler(src, info, origin)
}
