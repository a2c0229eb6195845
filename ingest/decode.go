package ingest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// MaxPayload is the largest payload accepted, in bytes.
const MaxPayload = 64 << 10

// MaxValues is the most metric values one message (or batch element) may
// carry.
const MaxValues = 64

// MaxReadings is the most elements one gateway batch may carry; the
// elements beyond it are rejected as too_many, one count for the rest of the
// batch.
const MaxReadings = 1000

// MaxString is the longest JSON string (key, device id, event name or an
// ignored value) accepted, in bytes after unescaping.
const MaxString = 256

// Default timestamp policy (docs/mqtt.md): a device clock more than
// DefaultMaxFuture ahead of the receive time is wrong; a ts older than
// DefaultMaxAge on a device's own topic is a clock that lost its time (in a
// gateway batch it is a replay of a long outage, and is kept).
const (
	DefaultMaxFuture = 10 * time.Minute
	DefaultMaxAge    = 7 * 24 * time.Hour
)

// DefaultMinTime (2020-01-01T00:00:00Z, Unix ms) is the earliest ts
// believed: an earlier one is a clock reset (to 2000-01-01 after a battery
// swap, to 1970 on a box without a clock) or seconds sent as milliseconds.
const DefaultMinTime = int64(1_577_836_800_000)

// Clock says what a message's ts was judged to be. A reading is never
// rejected for its ts: when the ts is not believed the reading stands at its
// receive time (docs/rules.md, "Clocks").
type Clock uint8

// Clocks.
const (
	// ClockDevice: the ts is plausible and is the reading's time.
	ClockDevice Clock = iota
	// ClockOld: a batch element older than MaxAge: a gateway replaying a long
	// outage. The ts is the reading's time.
	ClockOld
	// ClockNone: no ts; the receive time stands in.
	ClockNone
	// ClockAhead: the ts is more than MaxFuture ahead of the receive time.
	ClockAhead
	// ClockReset: the ts is before the decoder's MinTime.
	ClockReset
	// ClockStale: on a device's own topic, the ts is older than MaxAge.
	ClockStale
	NumClocks
)

var clockNames = [NumClocks]string{"device", "old", "none", "ahead", "reset", "stale"}

func (c Clock) String() string { return clockNames[c] }

// Trusted reports whether the ts is the reading's time.
func (c Clock) Trusted() bool { return c <= ClockOld }

// Suspect reports whether the device sent a ts that is not believed.
func (c Clock) Suspect() bool { return c >= ClockAhead }

// Reason says why a message was rejected. It is the label of
// firewatch_ingest_rejected_total.
type Reason uint8

// Rejection reasons (docs/mqtt.md).
const (
	ReasonBadTopic Reason = iota
	ReasonUnknownDevice
	ReasonMalformed
	ReasonUnknownMetric
	ReasonNotFinite
	ReasonOutOfRange
	ReasonTooLarge
	ReasonTooMany  // more values or batch elements than allowed
	ReasonTooLong  // a string longer than MaxString
	ReasonTSFuture // ts too far ahead of the receive time
	ReasonTSTooOld // ts older than the replay window
	ReasonSpoofed  // a batch element for a device not assigned to the gateway
	numReasons
)

var reasonNames = [numReasons]string{"bad_topic", "unknown_device", "malformed", "unknown_metric", "not_finite",
	"out_of_range", "too_large", "too_many", "too_long", "ts_future", "ts_too_old", "spoofed"}

func (r Reason) String() string { return reasonNames[r] }

// Reasons lists every reason, for pre-registering metric labels.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Reject describes one rejected message or batch element.
type Reject struct {
	Reason Reason
	// Device is the device id, when known.
	Device string
	Err    error
}

func (r Reject) Error() string {
	if r.Device != "" {
		return fmt.Sprintf("%s: device %s: %v", r.Reason, r.Device, r.Err)
	}
	return fmt.Sprintf("%s: %v", r.Reason, r.Err)
}

// Message is one decoded telemetry, event or status message of one device.
// Its values are read with Decoder.Values.
type Message struct {
	Device *devices.Device
	// Time is the reading's time (Unix ms): the device's ts when Clock is
	// trusted, else Recv.
	Time int64
	// Recv is the receive time (Unix ms), made unique per device: a message
	// without ts gets at least one millisecond more than the device's
	// previous one, so that two readings never overwrite each other in
	// InfluxDB.
	Recv int64
	// DevTime is the ts as sent (0 without).
	DevTime int64
	Seq     uint32
	HasSeq  bool
	Clock   Clock
	// Batch says the message came in a gateway batch.
	Batch   bool
	Channel uint8
	// Digest identifies the message's content (ts as sent, seq, channel,
	// metrics and values), for telling an exact duplicate from a new
	// message that reuses a seq.
	Digest uint32
	first  int
	n      int
	// absFirst and absN index the metrics the message carried as null
	// (Decoder.Absent).
	absFirst, absN int
}

// Decoder decodes payloads of the v1 contract. It reuses its buffers: the
// results of one Decode are valid until the next. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	// MaxFuture and MaxAge bound a message's "ts" around the receive time:
	// a ts further ahead (ClockAhead), or on a device's own topic older
	// (ClockStale), is not believed, and the reading stands at its receive
	// time. Zero disables the bound (NewDecoder leaves both zero; the
	// service sets them from ingest.max_future and ingest.max_age).
	MaxFuture, MaxAge time.Duration
	// MinTime (Unix ms) is the earliest ts believed (ClockReset before it);
	// zero disables it (the service sets DefaultMinTime).
	MinTime int64
	// lastRecv is, per device, the last receive time given out.
	lastRecv []int64

	ledger  *devices.Ledger
	gateway string // the gateway of the batch being decoded
	s       scanner
	msgs    []Message
	rejects []Reject
	metrics []devices.Metric
	values  []float64
	absent  []devices.Metric
}

// NewDecoder returns a decoder for the devices of l.
func NewDecoder(l *devices.Ledger) *Decoder {
	return &Decoder{
		ledger:   l,
		msgs:     make([]Message, 0, 128),
		lastRecv: make([]int64, len(l.Devices)),
		metrics:  make([]devices.Metric, 0, 1024),
		values:   make([]float64, 0, 1024),
	}
}

// Ledger returns the ledger the decoder resolves device ids in.
func (d *Decoder) Ledger() *devices.Ledger { return d.ledger }

// Absent returns the metrics m carried as null: a gateway's register map
// found a sentinel ("sensor not connected") or a NaN instead of a value.
// They are not in Values; the message's other metrics are.
func (d *Decoder) Absent(m *Message) []devices.Metric {
	return d.absent[m.absFirst : m.absFirst+m.absN]
}

// Values returns the metrics and values of m.
func (d *Decoder) Values(m *Message) ([]devices.Metric, []float64) {
	return d.metrics[m.first : m.first+m.n], d.values[m.first : m.first+m.n]
}

// Decode decodes one MQTT message. now (Unix ms) stands in for a missing
// device timestamp. It returns the accepted messages and the rejections; a
// batch can have both.
func (d *Decoder) Decode(topic string, payload []byte, now int64) ([]Message, []Reject) {
	d.msgs, d.rejects = d.msgs[:0], d.rejects[:0]
	d.metrics, d.values, d.absent = d.metrics[:0], d.values[:0], d.absent[:0]
	if len(payload) > MaxPayload {
		return nil, d.reject(ReasonTooLarge, "", fmt.Errorf("payload of %d bytes exceeds %d", len(payload), MaxPayload))
	}
	id, gateway, ok := ParseTopic(topic)
	if ok && gateway && strings.HasSuffix(topic, "/status") {
		// A gateway's own status (online, spool fill, its last will) carries no
		// readings; it is accepted and counted as a message.
		return nil, nil
	}
	if !ok {
		return nil, d.reject(ReasonBadTopic, "", fmt.Errorf("topic %q is not fw/v1/up/{device}/{telemetry|event|status} or fw/v1/up/gw/{gateway}/{batch|status}", truncate(topic)))
	}
	d.s.reset(payload)
	if gateway {
		d.gateway = d.ledger.GatewayID(id) // shared with its devices' Gateway: compared by pointer
		d.batch(now)
		return d.msgs, d.rejects
	}
	dev, ok := d.ledger.LookupID(id)
	if !ok {
		return nil, d.reject(ReasonUnknownDevice, truncate(id), devices.ErrUnknownDevice)
	}
	m, reason, err := d.message(dev, now, false)
	if err == nil {
		err = d.s.end()
		reason = ReasonMalformed
	}
	if err != nil {
		return nil, d.reject(reason, dev.ID, err)
	}
	d.msgs = append(d.msgs, m)
	return d.msgs, nil
}

func (d *Decoder) reject(r Reason, dev string, err error) []Reject {
	d.rejects = append(d.rejects, Reject{Reason: r, Device: dev, Err: err})
	return d.rejects
}

// batch decodes {"readings": [elem, ...]}, accepting good elements and
// rejecting bad ones one by one.
func (d *Decoder) batch(now int64) {
	s := &d.s
	found := false
	err := s.object(func(key []byte) error {
		if string(key) != "readings" {
			return s.skip(1)
		}
		found = true
		return s.array(func() error {
			if len(d.msgs)+len(d.rejects) >= MaxReadings {
				return errTooManyReadings
			}
			start := s.i
			mark, vmark, amark := len(d.msgs), len(d.metrics), len(d.absent)
			m, reason, err := d.message(nil, now, true)
			if err == nil {
				d.msgs = append(d.msgs, m)
				return nil
			}
			d.msgs, d.metrics, d.values, d.absent = d.msgs[:mark], d.metrics[:vmark], d.values[:vmark], d.absent[:amark]
			var devID string
			if m.Device != nil {
				devID = m.Device.ID
			}
			d.reject(reason, devID, err)
			// Skip the element from its start; if even that fails, the
			// rest of the batch cannot be read.
			s.i = start
			if err := s.skip(1); err != nil {
				d.rejects = d.rejects[:len(d.rejects)-1] // counted once, for the batch
				return err
			}
			return nil
		})
	})
	if err == nil {
		err = s.end()
	}
	if err == nil && !found {
		err = errors.New(`batch has no "readings" array`)
	}
	if err != nil {
		d.reject(reasonOf(err, ReasonMalformed), "", fmt.Errorf("batch: %w", err))
	}
}

// reasonOf maps the scanner's limit errors to their reasons.
func reasonOf(err error, otherwise Reason) Reason {
	switch {
	case errors.Is(err, errTooLong):
		return ReasonTooLong
	case errors.Is(err, errTooManyReadings):
		return ReasonTooMany
	}
	return otherwise
}

var (
	errNoDev           = errors.New(`batch element has no "dev" before its "m" or "event"`)
	errTooMany         = fmt.Errorf("more than %d values in one message", MaxValues)
	errTooManyReadings = fmt.Errorf("more than %d readings in one batch", MaxReadings)
	errDuplicate       = errors.New("metric given twice")
	errBadChannel      = fmt.Errorf(`"ch" must be an integer 1…%d`, devices.MaxChannels)
	errNotObject       = errors.New("payload is not a JSON object")
)

// message decodes one telemetry/event/status object. For a batch element
// (inBatch) the device comes from its "dev" key; otherwise dev is given.
func (d *Decoder) message(dev *devices.Device, now int64, inBatch bool) (Message, Reason, error) {
	e := element{d: d, inBatch: inBatch, reason: ReasonMalformed, active: true,
		m: Message{Device: dev, Time: -1, first: len(d.metrics), absFirst: len(d.absent)}}
	m := &e.m
	if d.s.peek() != '{' {
		return *m, ReasonMalformed, errNotObject
	}
	if err := d.s.object(e.member); err != nil {
		return *m, reasonOf(err, e.reason), err
	}
	if m.Device == nil {
		return *m, ReasonMalformed, errNoDev
	}
	if e.event != 0 {
		v := 0.0
		if e.active {
			v = 1
		}
		if err := d.add(m.first, e.event, v, &e.reason); err != nil {
			return *m, e.reason, err
		}
	}
	m.n = len(d.metrics) - m.first
	m.absN = len(d.absent) - m.absFirst
	if e.chGiven {
		if err := checkChannel(m.Channel, d.absent[m.absFirst:]); err != nil {
			return *m, ReasonMalformed, err
		}
		if err := checkChannel(m.Channel, d.metrics[m.first:]); err != nil {
			return *m, ReasonMalformed, err
		}
	}
	d.stamp(m, now, inBatch)
	return *m, 0, nil
}

// element is what message knows of the object it is decoding, as the
// scanner hands it the object's members one by one.
type element struct {
	d       *Decoder
	m       Message
	inBatch bool
	// reason is the rejection reason of the error a member returns.
	reason  Reason
	active  bool
	event   devices.Metric
	chGiven bool
}

// member decodes the value of one key of a message object; unknown keys
// are skipped.
func (e *element) member(key []byte) error {
	s, m := &e.d.s, &e.m
	switch string(key) {
	case "ts":
		v, err := s.int(1, math.MaxInt64)
		if err != nil {
			return fmt.Errorf(`"ts" must be a positive integer of Unix milliseconds`)
		}
		m.Time = v
	case "seq":
		v, err := s.int(0, math.MaxUint32)
		if err != nil {
			return fmt.Errorf(`"seq" must be an integer 0…4294967295`)
		}
		m.Seq, m.HasSeq = uint32(v), true
	case "ch":
		v, err := s.int(1, devices.MaxChannels)
		if err != nil {
			return errBadChannel
		}
		m.Channel, e.chGiven = uint8(v), true
	case "dev":
		if !e.inBatch {
			return s.skip(1)
		}
		return e.dev()
	case "m":
		if m.Device == nil {
			return errNoDev
		}
		return s.object(e.value)
	case "event":
		if m.Device == nil {
			return errNoDev
		}
		return e.eventName()
	case "active":
		v, err := s.boolean()
		if err != nil {
			return errors.New(`"active" must be true or false`)
		}
		e.active = v
	default:
		return s.skip(1)
	}
	return nil
}

// dev resolves a batch element's "dev": a device of the ledger assigned to
// the gateway whose batch it is.
func (e *element) dev() error {
	d := e.d
	id, err := d.s.str()
	if err != nil {
		return err
	}
	dev, ok := d.ledger.Lookup(id)
	if !ok {
		e.reason = ReasonUnknownDevice
		return fmt.Errorf("%w %q", devices.ErrUnknownDevice, truncate(string(id)))
	}
	if dev.Gateway != d.gateway {
		// No gateway speaks for a device not assigned to it.
		e.reason = ReasonSpoofed
		return fmt.Errorf("device %s is not assigned to gateway %s", dev.ID, d.gateway)
	}
	e.m.Device = dev
	return nil
}

// value decodes one member of "m": a metric of the device's kind and its
// number, or null for a metric without a value.
func (e *element) value(name []byte) error {
	d, s, m := e.d, &e.d.s, &e.m
	metric, ok := devices.LookupMetric(m.Device.Kind, name)
	if !ok {
		e.reason = ReasonUnknownMetric
		return fmt.Errorf("%s has no metric %q", m.Device.Kind, truncate(string(name)))
	}
	if s.peek() == 'n' && s.lit("null") {
		// No value (a sensor not connected): this metric only is absent;
		// the message's others stand.
		if len(d.absent)-m.absFirst >= MaxValues {
			e.reason = ReasonTooMany
			return errTooMany
		}
		d.absent = append(d.absent, metric)
		return nil
	}
	v, err := s.float()
	if err != nil {
		if err == errNotFin {
			e.reason = ReasonNotFinite
			return fmt.Errorf("%s: %w", metric, err)
		}
		return fmt.Errorf("%s: value is not a number", metric)
	}
	return d.add(m.first, metric, v, &e.reason)
}

// eventName decodes "event": an event of the device's kind.
func (e *element) eventName() error {
	name, err := e.d.s.str()
	if err != nil {
		return err
	}
	metric, ok := devices.LookupMetric(e.m.Device.Kind, name)
	if !ok || !metric.Info().Event {
		e.reason = ReasonUnknownMetric
		return fmt.Errorf("%s has no event %q", e.m.Device.Kind, truncate(string(name)))
	}
	e.event = metric
	return nil
}

// checkChannel reports a metric of ms that has fewer channels than ch.
func checkChannel(ch uint8, ms []devices.Metric) error {
	for _, metric := range ms {
		if ch > metric.Info().Channels {
			return fmt.Errorf("%s has %d channel(s), got ch %d", metric, metric.Info().Channels, ch)
		}
	}
	return nil
}

// stamp judges m's ts (Clock), gives it its receive time and its reading
// time, and computes its digest.
func (d *Decoder) stamp(m *Message, now int64, inBatch bool) {
	m.Batch = inBatch
	i := m.Device.Index
	if int(i) < len(d.lastRecv) {
		// Readings of one device never share a receive time: the coarse
		// clock ticks every 10 ms, and InfluxDB keeps one point per time.
		now = max(now, d.lastRecv[i]+1)
		d.lastRecv[i] = now
	}
	m.Recv = now
	ts := m.Time
	switch {
	case ts < 0:
		m.Clock, ts = ClockNone, 0
	case ts < d.MinTime:
		m.Clock = ClockReset
	case d.MaxFuture > 0 && ts > now+d.MaxFuture.Milliseconds():
		m.Clock = ClockAhead
	case d.MaxAge > 0 && ts < now-d.MaxAge.Milliseconds():
		m.Clock = ClockStale
		if inBatch {
			m.Clock = ClockOld
		}
	default:
		m.Clock = ClockDevice
	}
	m.DevTime = ts
	if !m.Clock.Trusted() {
		m.Time = now
	}
	// FNV-style mixing of what the device sent, one word at a time.
	const prime = 1099511628211
	h := (uint64(14695981039346656037) ^ uint64(ts)) * prime
	h = (h ^ (uint64(m.Seq) | uint64(m.Channel)<<32)) * prime
	for j := m.first; j < m.first+m.n; j++ {
		h = (h ^ uint64(d.metrics[j])) * prime
		h = (h ^ math.Float64bits(d.values[j])) * prime
	}
	for _, metric := range d.absent[m.absFirst : m.absFirst+m.absN] {
		h = (h ^ uint64(metric) ^ 1<<63) * prime
	}
	m.Digest = uint32(h ^ h>>32)
}

// add appends one value, checking the message's limits and the metric's
// plausible range.
func (d *Decoder) add(first int, metric devices.Metric, v float64, reason *Reason) error {
	info := metric.Info()
	if v < info.Min || v > info.Max {
		*reason = ReasonOutOfRange
		return fmt.Errorf("%s = %g outside %g…%g %s", metric, v, info.Min, info.Max, info.Unit)
	}
	if len(d.metrics)-first >= MaxValues {
		*reason = ReasonTooMany
		return errTooMany
	}
	for _, m := range d.metrics[first:] {
		if m == metric {
			*reason = ReasonMalformed
			return fmt.Errorf("%s: %w", metric, errDuplicate)
		}
	}
	d.metrics = append(d.metrics, metric)
	d.values = append(d.values, v)
	return nil
}

// ParseTopic splits the v1 uplink topics fw/v1/up/{id}/{telemetry|event|status}
// and fw/v1/up/gw/{id}/{batch|status} without allocating: id is the device
// or gateway, gateway says which, and ok is false for any other topic. The
// embedded broker's ACL checks topics with it too.
func ParseTopic(t string) (id string, gateway, ok bool) {
	if !strings.HasPrefix(t, TopicPrefix) {
		return "", false, false
	}
	rest := t[len(TopicPrefix):]
	if g, ok := strings.CutPrefix(rest, "gw/"); ok {
		id, leaf, _ := strings.Cut(g, "/")
		return id, true, id != "" && (leaf == "batch" || leaf == "status")
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", false, false
	}
	id = rest[:i]
	switch rest[i+1:] {
	case "telemetry", "event", "status":
		return id, false, true
	}
	return "", false, false
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
