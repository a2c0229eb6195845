package nbiot

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// SubmitFunc hands decoded reports to the pipeline. It returns nil only once
// they are taken for good (the alarms they raise committed); the handlers
// answer the platform 200 only then, and 5xx otherwise so that it retries.
type SubmitFunc func(ctx context.Context, reports []Report) error

// CountFunc counts what a handler did with a request: an outcome of bounded
// cardinality ("accepted", "duplicate", "verified", or a rejection reason
// such as "token", "tenant", "too_large", "submit" or a Reason of a decoder
// error). A Prometheus CounterVec with labels platform and outcome fits.
type CountFunc func(p Platform, outcome string)

// DefaultMaxBody bounds a request body: an NB-IoT push is a few hundred
// bytes, a OneNET batch a few kilobytes.
const DefaultMaxBody = 64 << 10

// Intake is what the platform handlers share: the submit seam, counting,
// body bounds and retry deduplication.
type Intake struct {
	Submit SubmitFunc
	Count  CountFunc // nil: not counted
	// Dedupe drops reports already submitted (a platform retrying a push
	// whose answer it missed). Nil: no deduplication.
	Dedupe  *Dedupe
	MaxBody int64 // 0: DefaultMaxBody
}

// Counted counts outcome for p.
func (in *Intake) Counted(p Platform, outcome string) {
	if in.Count != nil {
		in.Count(p, outcome)
	}
}

// ReadBody reads a request body within the bound. On failure it has
// counted the reason and returns the status to answer.
func (in *Intake) ReadBody(p Platform, r *http.Request) ([]byte, int, error) {
	max := in.MaxBody
	if max <= 0 {
		max = DefaultMaxBody
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		in.Counted(p, "read")
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > max {
		in.Counted(p, "too_large")
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", max)
	}
	return b, 0, nil
}

// Deliver submits the reports not already delivered, and remembers them
// once Submit has returned nil: a failed submit is never remembered, so the
// platform's retry is taken. It counts the outcome.
func (in *Intake) Deliver(ctx context.Context, p Platform, reports []Report) error {
	fresh := reports
	var keys, devs []uint64
	if in.Dedupe != nil {
		fresh = make([]Report, 0, len(reports))
		for i := range reports {
			k, ok := in.Dedupe.Key(&reports[i])
			dev := in.Dedupe.device(&reports[i])
			if ok && in.Dedupe.repeat(dev, k) {
				in.Counted(p, "duplicate")
				continue
			}
			fresh = append(fresh, reports[i])
			if ok {
				keys, devs = append(keys, k), append(devs, dev)
			}
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := in.Submit(ctx, fresh); err != nil {
		in.Counted(p, "submit")
		return err
	}
	for _, k := range keys {
		in.Dedupe.Add(k)
	}
	if len(keys) > 0 {
		in.Dedupe.setLast(devs, keys)
	}
	for range fresh {
		in.Counted(p, "accepted")
	}
	return nil
}

// Reject counts a decoder error by its reason and returns the HTTP status
// for it: 403 for a signature that does not verify, 400 otherwise.
func (in *Intake) Reject(p Platform, err error) int {
	in.Counted(p, Reason(err))
	if errors.Is(err, ErrSignature) || errors.Is(err, ErrDecrypt) {
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// PathToken reports whether the last segment of path is token, in constant
// time. An empty token never matches.
func PathToken(path, token string) bool {
	seg := strings.TrimSuffix(path, "/")
	if i := strings.LastIndexByte(seg, '/'); i >= 0 {
		seg = seg[i+1:]
	}
	return token != "" && subtle.ConstantTimeCompare([]byte(seg), []byte(token)) == 1
}

// Dedupe remembers the keys of the last Capacity delivered reports, and
// those of each device's last push. A report is a duplicate only if its key
// is remembered and it was in its device's last push: a platform's retry of
// the push it just made. The same report after a different push of the same
// device is taken again — GB/T 45839 times have whole seconds, so alarm,
// normal, alarm within one second are three reports, two of them alike, and
// dropping the third would hide an alarm. It is safe for concurrent use.
type Dedupe struct {
	mu   sync.Mutex
	seed maphash.Seed
	set  map[uint64]struct{}
	ring []uint64
	next int
	full bool
	last map[uint64][]uint64 // device → keys of its reports in its last delivered push
}

// DefaultDedupe is the capacity that covers OneNET's retries (about 2 h 45
// min) for a few thousand detectors reporting every few minutes.
const DefaultDedupe = 1 << 16

// NewDedupe returns a Dedupe of the given capacity (≤ 0: DefaultDedupe).
func NewDedupe(capacity int) *Dedupe {
	if capacity <= 0 {
		capacity = DefaultDedupe
	}
	return &Dedupe{seed: maphash.MakeSeed(), set: make(map[uint64]struct{}, capacity), ring: make([]uint64, capacity),
		last: map[uint64][]uint64{}}
}

// device is the identity of r's device (platform and its names).
func (d *Dedupe) device(r *Report) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteByte(byte(r.Platform))
	for _, s := range [...]string{r.Device.IMEI, r.Device.PlatformID, r.Device.Serial} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// repeat reports whether k is remembered and in dev's last push.
func (d *Dedupe) repeat(dev, k uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, seen := d.set[k]
	return seen && slices.Contains(d.last[dev], k)
}

// setLast records, for each device of a push just delivered, the keys of
// its reports in it (devs[i] is the device of keys[i]). The map is bounded
// like the key set: when it is full it starts again, which can only let a
// retry through, never drop a report.
func (d *Dedupe) setLast(devs, keys []uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.last) >= len(d.ring) {
		clear(d.last)
	}
	for _, dev := range devs {
		delete(d.last, dev)
	}
	for i, dev := range devs {
		d.last[dev] = append(d.last[dev], keys[i])
	}
}

// Key returns the identity of a report: platform, type, device, sequence
// number, time and content. A sequence number alone is never trusted (CTWing
// sends -1, and counters restart with the module), so two reports are the
// same only if all of these are. A report without a time has no key (ok
// false): two "alarm" statuses without times may be two alarms.
func (d *Dedupe) Key(r *Report) (uint64, bool) {
	if r.Time.IsZero() {
		return 0, false
	}
	var h maphash.Hash
	h.SetSeed(d.seed)
	var n [8]byte
	num := func(v uint64) {
		binary.LittleEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	str := func(s string) {
		num(uint64(len(s)))
		h.WriteString(s)
	}
	num(uint64(r.Platform)<<8 | uint64(r.Type))
	str(r.Device.IMEI)
	str(r.Device.PlatformID)
	str(r.Device.Serial)
	str(r.Service)
	num(uint64(r.Seq))
	num(uint64(r.Time.UnixMilli()))
	num(uint64(r.Presence)<<8 | uint64(r.EventType))
	num(uint64(len(r.Payload)))
	h.Write(r.Payload)
	num(uint64(len(r.JSON)))
	h.Write(bytes.TrimSpace(r.JSON))
	for _, v := range r.Values {
		num(uint64(v.Metric)<<16 | uint64(v.Ch))
		num(math.Float64bits(v.Value))
	}
	if c := r.Command; c != nil {
		str(c.ID)
		str(c.Result)
	}
	if r.Disabled {
		num(1)
	}
	if r.SignalSet {
		num(uint64(int64(r.Signal)))
	}
	return h.Sum64(), true
}

// Seen reports whether k was added and not yet evicted.
func (d *Dedupe) Seen(k uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.set[k]
	return ok
}

// Add remembers k, evicting the oldest key when full.
func (d *Dedupe) Add(k uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.set[k]; ok {
		return
	}
	if d.full {
		delete(d.set, d.ring[d.next])
	}
	d.ring[d.next] = k
	d.set[k] = struct{}{}
	d.next++
	if d.next == len(d.ring) {
		d.next, d.full = 0, true
	}
}

// Len is the number of keys remembered.
func (d *Dedupe) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.set)
}
