package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/tracker"
)

// seedSet is where `shoal seed` sends its job: one tracker, or every live
// replica of several, each asked to seed the blobs it owns (a
// tracker.SeedShard over the live ones, as agents rank them). Their jobs
// read as one: the IDs joined with commas, the blobs together.
type seedSet struct {
	names   []string
	clients []*tracker.Client
}

// seedLookup is how `shoal seed` resolves a dns+ tracker name: a name
// that resolves to nothing yet (the tracker pods are starting, as when the
// job runs right after an install) is looked up again every Every until
// For has been waited, then the seed fails with one line.
type seedLookup struct {
	Lookup tracker.Lookup
	For    time.Duration
	Every  time.Duration
	// Sleep waits d or until ctx ends (a test's returns at once).
	Sleep func(ctx context.Context, d time.Duration) error
}

func defaultSeedLookup() seedLookup {
	return seedLookup{Lookup: net.DefaultResolver.LookupHost, For: 2 * time.Minute, Every: 2 * time.Second, Sleep: sleepCtx}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// endpoints makes the clients of urls, waiting as l says for a dns+ name
// without addresses; a malformed URL fails at once.
func (l seedLookup) endpoints(ctx context.Context, urls []string, token string, opts ...tracker.Option) ([]tracker.Endpoint, error) {
	dns := slices.ContainsFunc(urls, func(u string) bool { return strings.HasPrefix(u, tracker.DNSScheme) })
	for waited := time.Duration(0); ; waited += l.Every {
		eps, err := tracker.Endpoints(ctx, urls, token, l.Lookup, opts...)
		if err == nil || !dns || !errors.Is(err, tracker.ErrUnavailable) {
			return eps, err
		}
		if waited >= l.For {
			return nil, fmt.Errorf("no tracker replica resolvable after %s of retries: %w", l.For, err)
		}
		if err := l.Sleep(ctx, l.Every); err != nil {
			return nil, fmt.Errorf("waiting for the tracker replicas to resolve: %w", err)
		}
	}
}

// newSeedSet makes the clients of urls; with several replicas only those
// that answer their health probe now share the blobs (agents pass a silent
// one over too). A dns+ name is waited for as defaultSeedLookup says.
func newSeedSet(ctx context.Context, urls []string, token string, opts ...tracker.Option) (*seedSet, error) {
	return newSeedSetWith(ctx, defaultSeedLookup(), urls, token, opts...)
}

func newSeedSetWith(ctx context.Context, l seedLookup, urls []string, token string, opts ...tracker.Option) (*seedSet, error) {
	eps, err := l.endpoints(ctx, urls, token, opts...)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	s := &seedSet{}
	if len(eps) == 1 {
		s.names, s.clients = []string{eps[0].Name}, []*tracker.Client{eps[0].Member.(*tracker.Client)}
		return s, nil
	}
	live := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			live[i] = ep.Member.Ping(pctx)
		})
	}
	wg.Wait()
	var errs []error
	for i, ep := range eps {
		if errors.Is(live[i], tracker.ErrCertificate) {
			return nil, fmt.Errorf("seed: tracker %s: %w", ep.Name, live[i])
		}
		if live[i] != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep.Name, live[i]))
			continue
		}
		s.names = append(s.names, ep.Name)
		s.clients = append(s.clients, ep.Member.(*tracker.Client))
	}
	if len(s.clients) == 0 {
		return nil, fmt.Errorf("seed: no tracker replica answers: %s", joinErrs(errs))
	}
	return s, nil
}

// CreateSeedJob starts req on every replica, each with its shard.
func (s *seedSet) CreateSeedJob(ctx context.Context, req tracker.SeedRequest) (*tracker.SeedJob, error) {
	jobs := make([]*tracker.SeedJob, len(s.clients))
	for i, c := range s.clients {
		r := req
		if len(s.clients) > 1 {
			r.Shard = &tracker.SeedShard{Of: s.names, Self: s.names[i]}
		}
		j, err := c.CreateSeedJob(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.names[i], err)
		}
		jobs[i] = j
	}
	return mergeJobs(jobs), nil
}

// SeedJob reads the jobs of a merged ID.
func (s *seedSet) SeedJob(ctx context.Context, id string) (*tracker.SeedJob, error) {
	ids := strings.Split(id, ",")
	if len(ids) != len(s.clients) {
		return nil, fmt.Errorf("%w: job %s is not one of this set of trackers", tracker.ErrInvalid, id)
	}
	jobs := make([]*tracker.SeedJob, len(ids))
	for i, c := range s.clients {
		j, err := c.SeedJob(ctx, ids[i])
		if err != nil {
			return nil, err
		}
		jobs[i] = j
	}
	return mergeJobs(jobs), nil
}

// jobStates orders a job's states by progress, failed last.
var jobStates = []string{tracker.JobResolving, tracker.JobFetching, tracker.JobPreheat, tracker.JobDone, tracker.JobFailed}

// mergeJobs reads the replicas' jobs as one: the least advanced state (or
// failed), every blob, the first replica's images.
func mergeJobs(jobs []*tracker.SeedJob) *tracker.SeedJob {
	if len(jobs) == 1 {
		return jobs[0]
	}
	m := *jobs[0]
	m.Blobs = nil
	var ids, errs []string
	rank := func(st string) int {
		for i, s := range jobStates {
			if s == st {
				return i
			}
		}
		return 0
	}
	for _, j := range jobs {
		ids = append(ids, j.ID)
		m.Blobs = append(m.Blobs, j.Blobs...)
		switch {
		case j.State == tracker.JobFailed:
			m.State = tracker.JobFailed
			errs = append(errs, j.Error)
		case m.State != tracker.JobFailed && rank(j.State) < rank(m.State):
			m.State = j.State
		}
		if j.Finished.After(m.Finished) {
			m.Finished = j.Finished
		}
	}
	m.ID, m.Error = strings.Join(ids, ","), strings.Join(errs, "; ")
	return &m
}

// joinErrs writes errs on one line, as a CLI error should be.
func joinErrs(errs []error) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}
