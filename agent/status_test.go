package agent_test

import (
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/shoal-dev/shoal/agent"
)

// fakeNow is a clock the test moves by hand.
type fakeNow struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeNow) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeNow) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestStatus follows an agent through a pull: a download in flight with its
// progress while the origin holds back, then the store, the bytes by
// source and the download rate once it is done; and whether the tracker
// answers, before and after it stops.
func TestStatus(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img, _ := random.Image(4<<20, 1)
	push(t, o, "app/status", "v1", img)
	tn, stopTracker := startTracker(t, o.URL)
	n := startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	clock := &fakeNow{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rep := agent.NewReporter(n.Agent, agent.StatusParts{Capacity: 1 << 30, Tracker: tn.client, TrackerURL: "http://tracker", Now: clock.Now})
	ctx := t.Context()

	st := rep.Status(ctx)
	if st.Tracker == nil || !st.Tracker.Reachable || st.Tracker.URL != "http://tracker" {
		t.Errorf("tracker %+v, want reachable", st.Tracker)
	}
	if len(st.Downloads) != 0 || st.Store.Blobs != 0 || st.Store.CapacityBytes != 1<<30 || st.Rates.WindowSeconds != 0 {
		t.Errorf("idle agent: %+v", st)
	}

	release := o.holdAfter(t, 1<<20)
	done := make(chan error, 1)
	go func() {
		_, err := fetchImage(ctx, n, "app/status", ":v1")
		done <- err
	}()
	var inFlight agent.DownloadStatus
	for i := 0; i < 600 && inFlight.Pieces == 0; i++ {
		for _, d := range rep.Status(ctx).Downloads {
			if d.Pieces > 1 && d.Have > 0 {
				inFlight = d
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if inFlight.Pieces == 0 {
		t.Fatal("no download in flight with a piece held while the origin held back")
	}
	if inFlight.Have >= inFlight.Pieces || inFlight.SizeBytes < 4<<20 {
		t.Errorf("download in flight %+v: want part of a 4 MiB layer", inFlight)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	clock.advance(2 * time.Second)
	st = rep.Status(ctx)
	size := imageBytes(t, img)
	recv := st.Received.Peers + st.Received.Seeder + st.Received.Origin
	if recv != size || st.Received.Seeder == 0 {
		t.Errorf("received %+v, want %d bytes in all, from the seeder", st.Received, size)
	}
	if len(st.Downloads) != 0 || st.Store.Blobs != 2 || st.Store.UsedBytes != size {
		t.Errorf("after the pull: downloads %+v, store %+v; want none, 2 blobs of %d bytes", st.Downloads, st.Store, size)
	}
	if st.Rates.WindowSeconds != 2 || st.Rates.DownloadBytesPerSecond != float64(size)/2 {
		t.Errorf("rates %+v, want %d bytes over 2s", st.Rates, size)
	}

	// The JSON endpoint says the same.
	srv := httptest.NewServer(rep.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var got agent.Status
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.Store != st.Store || got.Received != st.Received {
		t.Errorf("GET /v1/status: %+v, %v; want store %+v, received %+v", got, err, st.Store, st.Received)
	}

	stopTracker()
	st = rep.Status(ctx)
	if st.Tracker == nil || st.Tracker.Reachable || st.Tracker.Error == "" {
		t.Errorf("tracker after it stopped: %+v, want unreachable with an error", st.Tracker)
	}
}
