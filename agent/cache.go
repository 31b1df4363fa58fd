package agent

import (
	"container/list"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim"
)

// maxTags bounds the tag cache: tags come from clients.
const maxTags = 16384

type tagKey struct{ registry, repo, tag string }

type tagEntry struct {
	digest digest.Digest
	at     time.Time
}

// tagCache remembers the last digest each tag resolved to, and when.
type tagCache struct {
	mu  sync.Mutex
	max int
	m   map[tagKey]tagEntry
}

func newTagCache(max int) *tagCache { return &tagCache{max: max, m: make(map[tagKey]tagEntry)} }

func (c *tagCache) get(k tagKey) (tagEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	return e, ok
}

func (c *tagCache) put(k tagKey, d digest.Digest, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m { // map order is random: evict any one
			delete(c.m, old)
			break
		}
	}
	c.m[k] = tagEntry{digest: d, at: at}
}

// manifestCache keeps manifests by digest, least recently used evicted
// first once their bytes pass max. Manifests by digest never change.
type manifestCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	lru   *list.List // of *registryshim.Manifest, most recent in front
	m     map[digest.Digest]*list.Element
}

func newManifestCache(max int64) *manifestCache {
	return &manifestCache{max: max, lru: list.New(), m: make(map[digest.Digest]*list.Element)}
}

func (c *manifestCache) get(d digest.Digest) (*registryshim.Manifest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[d]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*registryshim.Manifest), true
}

func (c *manifestCache) put(m *registryshim.Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[m.Digest]; ok || int64(len(m.Body)) > c.max {
		return
	}
	c.m[m.Digest] = c.lru.PushFront(m)
	c.bytes += int64(len(m.Body))
	for c.bytes > c.max {
		old := c.lru.Remove(c.lru.Back()).(*registryshim.Manifest)
		delete(c.m, old.Digest)
		c.bytes -= int64(len(old.Body))
	}
}
