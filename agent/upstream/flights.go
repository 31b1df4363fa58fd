package upstream

import (
	"context"
	"sync"
)

// flights builds a value once per key and caches it, so concurrent first
// requests for a repository share one ping and one token exchange. A
// failure is handed to the callers that waited for it and then forgotten,
// so the next call tries again.
type flights[T any] struct {
	max int // bound on cached keys; repositories come from clients

	mu sync.Mutex
	m  map[string]*flight[T]
}

type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

func newFlights[T any](max int) *flights[T] {
	return &flights[T]{max: max, m: make(map[string]*flight[T])}
}

// get returns the value for key, building it if needed. build runs in its
// own goroutine so a caller whose ctx ends stops waiting at once; build must
// bound its own run time.
func (f *flights[T]) get(ctx context.Context, key string, build func() (T, error)) (T, error) {
	f.mu.Lock()
	fl, ok := f.m[key]
	if !ok {
		if len(f.m) >= f.max {
			f.evictLocked()
		}
		fl = &flight[T]{done: make(chan struct{})}
		f.m[key] = fl
		go func() {
			val, err := build()
			fl.val, fl.err = val, err
			if err != nil {
				f.forget(key, fl)
			}
			close(fl.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-fl.done:
		return fl.val, fl.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// forget drops key if it still holds fl (nil: whatever it holds).
func (f *flights[T]) forget(key string, fl *flight[T]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.m[key]; ok && (fl == nil || cur == fl) {
		delete(f.m, key)
	}
}

// evictLocked drops one finished entry. Which one does not matter much: a
// dropped repository costs one token exchange when it comes back.
func (f *flights[T]) evictLocked() {
	for k, fl := range f.m {
		select {
		case <-fl.done:
			delete(f.m, k)
			return
		default:
		}
	}
}
