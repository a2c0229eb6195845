package cluster

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
)

// Catching the registry up (issue 15). Every instance follows the shared
// registry store by polling its version (registry.Store.Follow, about once
// a second). That leaves a window: a device added through instance A's
// API is admitted by A's auth callout, connects and publishes at once; its
// partition's owner B has not polled yet and its pipeline would reject the
// message as unknown_device, acknowledge it to the stream and drop it — a
// fire alarm sent in the first second after a registration lost.
//
// So the partition's owner, before it takes a message whose device,
// gateway or station is not in its live registry, catches the registry up
// (CatchUpRegistry: registry.Store.Sync), and only then hands the message
// to the pipeline. Store.Sync returns once the change is applied to
// devices.Live, whose subscribers — the pipeline first — have it in force
// when Apply returns (pipeline/registry.go: adopted between two messages),
// so the message is decoded with the new registry.
//
// The message waits for a catch-up that STARTED after the message was
// taken here: one already running may have read the store's version before
// the device was committed. Catch-ups are coalesced across the partitions
// (every message waiting is served by the next one) and start at most
// once every catchUpEvery per instance, so that the messages of a device
// that stays unknown (a removed one still connected a moment, a gateway
// batch's unknown gateway) cannot hammer PostgreSQL; a message stored in
// the stream more than catchUpSkew before the last catch-up started is
// covered by it, so that such a flood holds its partition back by about
// catchUpSkew at most (wait). Such messages are rare by construction: the
// auth callout admits only devices and gateways some instance's registry
// holds, and the topic ACLs confine each to its own topics.
//
// What is checked is the topic's id, one lookup in the live ledger: a
// device's topic (fw/v1/up/{id}/…) by the device index, a gateway's batch
// (fw/v1/up/gw/{id}/batch) by whether any device names the gateway, a
// station's report (fw/v1/up/station/{id}/status) by the station table.
// The devices inside a known gateway's batch are not looked at here
// (that would parse the batch twice): a device newly assigned to a known
// gateway whose first batch reaches its owner before the commit is followed
// here (notified: milliseconds; else the next poll) has its
// elements rejected as unknown_device (docs/decisions.md, issue 15).

// catchUpEvery is the least time between two catch-ups of one instance.
const catchUpEvery = 200 * time.Millisecond

// catchUpSkew is the margin by which a catch-up must have started after a
// message was stored in the stream (the servers' clock) to count for it
// without waiting: the clocks of the NATS nodes and of the instances may
// differ by that much at most (NTP keeps them within milliseconds).
const catchUpSkew = time.Second

// catchUpTimeout bounds one catch-up: a registry store that does not
// answer must not hold a partition longer; the message is then taken
// with the registry in force.
const catchUpTimeout = 5 * time.Second

// catchUp coalesces and rate-limits the catch-ups of one instance.
type catchUp struct {
	sync  func(context.Context) error
	every time.Duration
	// now is the clock (tests).
	now func() time.Time

	mu        sync.Mutex
	started   uint64 // catch-ups started
	done      uint64 // the number of the last one finished (they run one at a time)
	running   bool
	lastStart time.Time
	doneStart time.Time     // when the last one finished had started
	finished  chan struct{} // closed when the one running finishes

	n       atomic.Uint64
	waiting atomic.Int32           // messages waiting for the one running (tests)
	metrics *prometheus.CounterVec // by result: ok, error
}

func newCatchUp(sync func(context.Context) error, every time.Duration) *catchUp {
	return &catchUp{sync: sync, every: every, now: time.Now, finished: make(chan struct{}),
		metrics: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_cluster_registry_catchups_total",
			Help: "registry catch-ups (registry store Sync) made because a message named a device, gateway or station not in the live registry, by result"},
			[]string{"result"})}
}

// wait returns once a catch-up has finished that started after wait was
// called, or more than catchUpSkew after stored (when the message was
// stored in the stream; zero: unknown), or when quit is closed. It starts
// one if none is running and the last started at least every ago, else
// waits for the one running or for the rate limit.
//
// The second condition bounds what a flood of messages of ids that stay
// unknown costs their partition: each live message waits for a catch-up
// (up to every plus one Sync), the partition falls behind, and once its
// messages are older than catchUpSkew the last catch-up counts for all of
// them — at most about catchUpSkew behind, never an ever growing backlog.
// It is safe because the device was committed before its message was
// published (the auth callout admitted it from a registry that had it).
func (c *catchUp) wait(quit <-chan struct{}, stored time.Time) {
	c.mu.Lock()
	want := c.started + 1 // one running now started before us: not enough
	for c.done < want && (stored.IsZero() || !c.doneStart.After(stored.Add(catchUpSkew))) {
		if c.running {
			fin := c.finished
			c.mu.Unlock()
			c.waiting.Add(1)
			select {
			case <-fin:
			case <-quit:
				c.waiting.Add(-1)
				return
			}
			c.waiting.Add(-1)
			c.mu.Lock()
			continue
		}
		if d := c.every - c.now().Sub(c.lastStart); d > 0 {
			c.mu.Unlock()
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-quit:
				t.Stop()
				return
			}
			c.mu.Lock()
			continue
		}
		c.running = true
		c.started++
		mine := c.started
		start := c.now()
		c.lastStart = start
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
		err := c.sync(ctx)
		cancel()
		c.n.Add(1)
		if err != nil {
			c.metrics.WithLabelValues("error").Inc()
		} else {
			c.metrics.WithLabelValues("ok").Inc()
		}
		c.mu.Lock()
		c.done = mine
		c.doneStart = start
		c.running = false
		close(c.finished)
		c.finished = make(chan struct{})
	}
	c.mu.Unlock()
}

// CatchUpRegistry makes the source catch the registry up with sync
// (registry.Store.Sync) before it takes a message whose device, gateway
// or station is not in the live registry (catchup.go). Call it before Run,
// on a source made with a ledger and following the registry (Follow).
// reg, if not nil, receives the catch-ups' metric.
func (s *Source) CatchUpRegistry(sync func(context.Context) error, reg prometheus.Registerer) {
	c := newCatchUp(sync, catchUpEvery)
	if reg != nil {
		reg.MustRegister(c.metrics)
	}
	s.catchUp = c
}

// RegistryCatchUps returns how many catch-ups the source made.
func (s *Source) RegistryCatchUps() uint64 {
	if s.catchUp == nil {
		return 0
	}
	return s.catchUp.n.Load()
}

// knowTopic catches the registry up, when the source does, if topic names
// a device, gateway or station not in the live registry; it is called
// before the message, stored in the stream at stored, is taken. For a known id it costs one lookup.
func (p *partition) knowTopic(topic string, stored time.Time) {
	s := p.s
	if s.catchUp == nil {
		return
	}
	m := s.devs.Load()
	if m == nil || m.ledger == nil || known(m.ledger, topic) {
		return
	}
	s.catchUp.wait(p.quit, stored)
}

// known reports whether the v1 uplink topic's device, gateway or station
// is in l, or the topic names none (a gateway's own status, a topic the
// pipeline rejects anyway).
func known(l *devices.Ledger, topic string) bool {
	rest, ok := strings.CutPrefix(topic, "fw/v1/up/")
	if !ok {
		return true
	}
	first, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return true
	}
	switch first {
	case "gw":
		id, kind, _ := strings.Cut(rest, "/")
		if kind != "batch" {
			return true // a gateway's status carries no readings
		}
		return l.HasGateway(id)
	case "station":
		id, _, _ := strings.Cut(rest, "/")
		return l.Station(id) != nil
	}
	switch rest {
	case "telemetry", "event", "status":
		_, ok = l.LookupID(first)
		return ok
	}
	return true // not a device's topic: the pipeline rejects it as bad_topic
}
