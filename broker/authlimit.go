package broker

import (
	"sync"
	"time"
)

// Limits of the embedded broker's password checks (docs/security.md). Each
// argon2id run costs tens of milliseconds of CPU and 19 MiB; device ids are
// not secret, so wrong passwords are the cheapest way to load the host.
const (
	// kdfWait is how long a CONNECT waits for an argon2id slot before it is
	// refused (the client tries again later) rather than queue behind a
	// flood.
	kdfWait = 500 * time.Millisecond
	// freeFailures is how many wrong passwords a user name or an address
	// may send before it backs off; then each further failure doubles its
	// wait, from backoffMin up to backoffMax.
	freeFailures = 3
	backoffMin   = time.Second
	backoffMax   = time.Minute
	// maxTracked bounds the user names and addresses remembered.
	maxTracked = 100_000
)

// backoff counts recent password failures by key (a user name, an IP
// address) and says which keys must wait before their next argon2id check.
// Only the expensive check waits: a client whose secret already passed
// since the start (Auth's fast path) is never held back. A user name
// backing off holds back only addresses that have sent wrong passwords
// themselves, so that a flood aimed at a device's id (ids are not secret)
// does not lock the device out from its own, clean address.
type backoff struct {
	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	n     int
	until time.Time // no argon2id check before then
	last  time.Time
}

func newBackoff() *backoff { return &backoff{keys: map[string]*failures{}} }

// wait reports whether key is backing off at now.
func (b *backoff) wait(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.keys[key]
	return f != nil && now.Before(f.until)
}

// known reports whether key has failed recently.
func (b *backoff) known(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keys[key] != nil
}

// fail records a failure of key at now.
func (b *backoff) fail(key string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.keys[key]
	if f == nil || now.After(f.last.Add(backoffMax)) && now.After(f.until.Add(backoffMax)) {
		// New, or quiet for longer than the longest wait: start over.
		if f == nil && len(b.keys) >= maxTracked {
			b.evict(now)
		}
		f = &failures{}
		b.keys[key] = f
	}
	f.n++
	f.last = now
	if f.n > freeFailures {
		f.until = now.Add(min(backoffMin<<min(f.n-freeFailures-1, 16), backoffMax))
	}
}

// ok forgets key's failures after a success.
func (b *backoff) ok(key string) {
	b.mu.Lock()
	delete(b.keys, key)
	b.mu.Unlock()
}

// evict makes room: it drops every key whose wait is long over, and a
// tenth of the others (any: map order is random), so that a flood of new
// keys costs one scan per tenth of maxTracked, not one per key.
func (b *backoff) evict(now time.Time) {
	n := 0
	for k, f := range b.keys {
		if now.After(f.until.Add(backoffMax)) || n < maxTracked/10 {
			delete(b.keys, k)
			n++
		}
	}
}
