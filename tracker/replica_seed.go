package tracker

import (
	"fmt"
	"net/url"

	"github.com/opencontainers/go-digest"
)

// SeedShard is the part of a seed job one tracker replica takes: the blobs
// that Self owns among the replicas Of (their names as agents rank them:
// the --tracker URLs as given, or address:port for a DNS name). `shoal
// seed` sends the job to every live replica, each with its own Self.
type SeedShard struct {
	Of   []string `json:"of"`
	Self string   `json:"self"`
}

// maxShardReplicas bounds the replicas a shard names.
const maxShardReplicas = 64

func (s *SeedShard) validate() error {
	if s == nil {
		return nil
	}
	if len(s.Of) == 0 || len(s.Of) > maxShardReplicas {
		return fmt.Errorf("%w: shard of %d replicas, want 1 to %d", ErrInvalid, len(s.Of), maxShardReplicas)
	}
	self := false
	for _, n := range s.Of {
		if n == "" || len(n) > maxAddrLen || !printable(n) {
			return fmt.Errorf("%w: shard replica name %q", ErrInvalid, truncate(n))
		}
		self = self || n == s.Self
	}
	if !self {
		return fmt.Errorf("%w: shard: %q is not one of its replicas", ErrInvalid, truncate(s.Self))
	}
	return nil
}

// Owns reports whether the replica Self owns d; a nil shard owns all.
func (s *SeedShard) Owns(d digest.Digest) bool {
	return s == nil || s.Of[Rank(s.Of, d.String())[0]] == s.Self
}

// ShardHeader carries, on a registry webhook one tracker replica passes on
// to another, the shard the receiver takes of it: Encode's form. A webhook
// with it is not passed on again.
const ShardHeader = "Shoal-Shard"

// Encode writes s as ShardHeader's value: self=NAME&of=NAME&of=NAME...
func (s SeedShard) Encode() string {
	return url.Values{"self": {s.Self}, "of": s.Of}.Encode()
}

// ParseShard reads a ShardHeader value; a malformed one is ErrInvalid.
func ParseShard(v string) (*SeedShard, error) {
	q, err := url.ParseQuery(v)
	if err != nil || len(q["self"]) != 1 || len(q) != 2 {
		return nil, fmt.Errorf("%w: %s: want self=NAME&of=NAME...", ErrInvalid, ShardHeader)
	}
	s := &SeedShard{Of: q["of"], Self: q.Get("self")}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}
