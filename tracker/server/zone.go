package server

import "github.com/shoal-dev/shoal/tracker"

// crossShare is the part of a zoned handout (1 in crossShare, at least
// one peer) given to peers of other zones before those of the asker's
// zone: a zone's first copies of each piece come from them, so every
// session follows a few, and the rest of its peers are its zone's.
const crossShare = 8

// zonedHandout fills out, up to max, with the holders of a blob as a peer
// of zone asks for them: the seeders, then a few peers of other zones
// (crossShare), then the peers of the zone, then more of other zones if
// room is left; complete peers before the others within each. first and
// rest are the complete (and seeding) and the other holders, draw the
// handout's random source: each group is drawn at random as handout's are.
func zonedHandout(zone string, first, rest []*holding, out []tracker.Peer, max int, draw func(int) int) []tracker.Peer {
	var seeders, local, localRest, other, otherRest zonePool
	for _, h := range first {
		switch {
		case h.peer.seeder:
			seeders.g = append(seeders.g, h)
		case h.peer.zone == zone:
			local.g = append(local.g, h)
		default:
			other.g = append(other.g, h)
		}
	}
	for _, h := range rest {
		if h.peer.zone == zone {
			localRest.g = append(localRest.g, h)
		} else {
			otherRest.g = append(otherRest.g, h)
		}
	}
	take := func(p *zonePool, n int) {
		for ; n > 0 && len(out) < max; n-- {
			h := p.next(draw)
			if h == nil {
				return
			}
			out = append(out, h.handed(true))
		}
	}
	take(&seeders, max)
	cross := len(out) + (max+crossShare-1)/crossShare
	take(&other, cross-len(out))
	take(&otherRest, cross-len(out))
	for _, p := range []*zonePool{&local, &localRest, &other, &otherRest} {
		take(p, max)
	}
	return out
}

// zonePool draws the holdings of one group at random without repeats (a
// partial Fisher-Yates shuffle: only the ones drawn are moved).
type zonePool struct {
	g []*holding
	i int
}

func (p *zonePool) next(draw func(int) int) *holding {
	if p.i == len(p.g) {
		return nil
	}
	j := p.i + draw(len(p.g)-p.i)
	p.g[p.i], p.g[j] = p.g[j], p.g[p.i]
	p.i++
	return p.g[p.i-1]
}
