package agent

import (
	"errors"
	"net"
	"net/http"

	"github.com/shoal-dev/shoal/tracker"
)

// TrackerNode is a tracker together with its seeder: an agent in seed mode
// that fetches each blob from the origin once, on first demand, and joins
// the swarm with it. `shoal tracker` runs one.
type TrackerNode struct {
	Server *tracker.Server
	Seeder *Agent
	URL    string
}

// NewTrackerNode builds a tracker that will be reached at url (the address
// its listener has) and its seeder. The seeder announces to the tracker
// like any agent, with the tracker's token. Serve Handler on the listener.
func NewTrackerNode(url string, tcfg tracker.Config, seed Config, opts ...Option) (*TrackerNode, error) {
	seed.Tracker = url
	seed.TrackerToken = tcfg.Token
	seed.Seeder = true
	seeder, err := New(seed, opts...)
	if err != nil {
		return nil, err
	}
	o := collect(opts)
	srv, err := tracker.NewServer(tcfg, seeder, tracker.WithLogger(o.logger), tracker.WithRegisterer(o.registerer))
	if err != nil {
		seeder.Close()
		return nil, err
	}
	return &TrackerNode{Server: srv, Seeder: seeder, URL: url}, nil
}

// Handler serves the tracker's API.
func (n *TrackerNode) Handler() http.Handler { return n.Server.Handler() }

// Close stops seeding and the seeder.
func (n *TrackerNode) Close() error {
	return errors.Join(n.Server.Close(), n.Seeder.Close())
}

// ListenURL returns the http URL of a listener's address.
func ListenURL(ln net.Listener) string { return "http://" + ln.Addr().String() }
