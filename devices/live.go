package devices

import (
	"sync"
	"sync/atomic"
)

// Live holds the current ledger snapshot for concurrent readers and
// serializes changes to it. Readers Load a snapshot and keep using it for
// as long as they like (a message, a request): snapshots are never
// modified.
type Live struct {
	cur  atomic.Pointer[Ledger]
	mu   sync.Mutex // serializes Apply and Subscribe
	subs []func(old, new *Ledger, d *Diff)
}

// NewLive returns a Live holding l.
func NewLive(l *Ledger) *Live {
	lv := &Live{}
	lv.cur.Store(l)
	return lv
}

// Load returns the current snapshot: an atomic load, never nil.
func (lv *Live) Load() *Ledger { return lv.cur.Load() }

// Apply applies c to the current snapshot (Ledger.Apply) under the change
// mutex, stores the new snapshot, then calls every subscriber in
// registration order with (old, new, diff) and returns once all have
// returned. A subscriber that must adopt the snapshot at a message
// boundary (the pipeline) blocks until it has, so that when Apply returns
// the change is in effect everywhere. On a problem nothing changes. For a
// dry run use Load().Apply(c) and discard the result.
func (lv *Live) Apply(c *Change) (*Ledger, *Diff, error) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	old := lv.cur.Load()
	n, d, err := old.Apply(c)
	if err != nil {
		return nil, nil, err
	}
	lv.cur.Store(n)
	for _, f := range lv.subs {
		f(old, n, d)
	}
	return n, d, nil
}

// Subscribe registers f to be called after each change, in the order of
// registration, with the change mutex held: f must not call Apply.
func (lv *Live) Subscribe(f func(old, new *Ledger, d *Diff)) {
	lv.mu.Lock()
	lv.subs = append(lv.subs, f)
	lv.mu.Unlock()
}
