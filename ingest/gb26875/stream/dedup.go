package stream

import (
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// Dedup remembers the frames evaluated recently, by source address and serial number, with a hash of
// their command and ADU. A UITD that misses the 确认 sends the same frame again with the same serial number
// (§6.5); that retransmission must be confirmed again but not evaluated again. The packet's own time label
// is not part of the content, since a sender may refresh it when it retransmits.
//
// It holds at most capacity frames (the oldest recorded is forgotten first) for at most ttl. Safe for
// concurrent use.
type Dedup struct {
	mu   sync.Mutex
	ttl  time.Duration
	m    map[dedupKey]dedupEntry
	ring []dedupKey
	used []bool
	next int
}

type dedupKey struct {
	src    gb26875.Address
	serial uint16
}

type dedupEntry struct {
	sum  uint64
	at   time.Time
	slot int
}

// NewDedup remembers up to capacity frames for ttl each. The standard retries three times at most 10 s
// apart, so a ttl of a few minutes covers every retransmission.
func NewDedup(capacity int, ttl time.Duration) *Dedup {
	if capacity < 1 {
		capacity = 1
	}
	return &Dedup{ttl: ttl, m: make(map[dedupKey]dedupEntry, capacity), ring: make([]dedupKey, capacity), used: make([]bool, capacity)}
}

func content(f *gb26875.Frame) uint64 {
	// FNV-1a, inline so that nothing escapes.
	h := uint64(14695981039346656037)
	h = (h ^ uint64(f.Command)) * 1099511628211
	for _, c := range f.ADU {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h ^ uint64(len(f.ADU))<<56
}

// Seen reports whether f was recorded (by Done) within the ttl with the same source, serial number and
// content: a retransmission to confirm again without evaluating.
func (d *Dedup) Seen(f *gb26875.Frame, now time.Time) bool {
	k := dedupKey{f.Src, f.Serial}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[k]
	return ok && e.sum == content(f) && now.Sub(e.at) <= d.ttl
}

// Done records f as evaluated. Call it only after the frame's effects are committed (before sending the
// 确认): a frame whose evaluation failed must be evaluated again when it is retransmitted.
func (d *Dedup) Done(f *gb26875.Frame, now time.Time) {
	k := dedupKey{f.Src, f.Serial}
	sum := content(f)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[k]; ok {
		d.m[k] = dedupEntry{sum: sum, at: now, slot: e.slot}
		return
	}
	slot := d.next
	d.next = (d.next + 1) % len(d.ring)
	if d.used[slot] {
		if old, ok := d.m[d.ring[slot]]; ok && old.slot == slot {
			delete(d.m, d.ring[slot])
		}
	}
	d.ring[slot], d.used[slot] = k, true
	d.m[k] = dedupEntry{sum: sum, at: now, slot: slot}
}

// Len is the number of frames remembered.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}
