package trackertest

import (
	"sync"
	"time"

	"github.com/shoal-dev/shoal/tracker/server"
)

// Clock is a server.Clock that moves only when told.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

var _ server.Clock = (*Clock)(nil)

// NewClock returns a Clock set to start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
