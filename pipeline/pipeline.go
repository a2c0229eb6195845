package pipeline

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// Lines takes encoded line protocol (the InfluxDB writer).
type Lines interface{ Write(lines []byte) }

// Events takes rule transitions (the alarm manager's queue).
type Events interface{ Submit(ev rules.Event) }

// Pipeline is the hot path: one message is decoded once, each value is
// evaluated by the rules, and the message becomes one line of line
// protocol. Only rule transitions leave it, as events. Messages are handled
// one at a time (Handle holds a mutex) and reuse all of its buffers.
type Pipeline struct {
	dec   *ingest.Decoder
	eng   *rules.Engine
	enc   *influx.Encoder
	lines Lines
	out   Events // the alarm manager's queue
	stats *ingest.Stats
	evals prometheus.Counter
	// dups and late count messages the engine did not evaluate, or
	// evaluated for events only (rules.Admit).
	dups, late prometheus.Counter
	// clocks counts messages evaluated at their receive time although they
	// carried a ts, by why (ingest.Clock, or "behind").
	clocks       [ingest.NumClocks]prometheus.Counter
	clocksBehind prometheus.Counter
	// next is a reloaded engine waiting to take over between two messages.
	next    atomic.Pointer[rules.Engine]
	clock   coarseClock
	swapped func(*rules.Engine)
	// live, if set, is told of every accepted message (liveness, vitals).
	live *devices.Liveness
	// edge, if set, takes gateways' status and absent (null) metrics
	// (edge_faults.go).
	edge *edgeFaults

	// alarms takes station reports and command acknowledgements, and is
	// synced after each message (router.go); set by New.
	alarms Alarms
	log    *slog.Logger
	// lastBad rate-limits the log of malformed station reports (Unix ns).
	lastBad atomic.Int64
	// reload, ckpt and ledger are set by New (reload.go, checkpoint.go).
	reload *rulesReloader
	ckpt   *checkpoint // nil without a state file
	ledger *devices.Ledger
	tick   time.Duration // liveness tick

	// durable, if set, tells Take when a message's readings are durable.
	durable Durability

	// mu is held while a message is handled, so that the checkpoint can
	// copy the engine's state between two messages.
	mu sync.Mutex

	buf    []byte
	events []rules.Event
	stamp  rules.Stamp

	// reg follows live registry changes (registry.go); last, so that the
	// hot path's fields keep their places.
	reg registryState
	// unacked counts messages left unacknowledged (unacked.go).
	unacked prometheus.Counter
}

func newPipeline(l *devices.Ledger, eng *rules.Engine, lines Lines, events Events, stats *ingest.Stats, reg prometheus.Registerer) *Pipeline {
	p := &Pipeline{
		dec: ingest.NewDecoder(l), eng: eng, enc: influx.NewEncoder(l),
		lines: lines, out: events, stats: stats, ledger: l, log: slog.Default(),
		evals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_rules_evaluations_total", Help: "Readings evaluated by the rule engine.",
		}),
		dups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_ingest_duplicates_total", Help: "Messages dropped as exact copies of messages already evaluated (same device, seq and content).",
		}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_ingest_late_total", Help: "Older messages (replays, reorderings) behind their device's newest: stored, evaluated by event rules only.",
		}),
		buf:    make([]byte, 0, 64<<10),
		events: make([]rules.Event, 0, 16),
	}
	p.reg.set, p.reg.ledger, p.reg.eng = eng.Set(), l, eng // registry.go
	clocks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firewatch_ingest_clock_fallbacks_total",
		Help: "Messages with a ts that was not believed, stored and evaluated at their receive time, by why: ahead, reset (before 2020), stale (older than ingest.max_age on the device's own topic), behind (older than the device's newest, yet new).",
	}, []string{"clock"})
	for c := ingest.ClockAhead; c < ingest.NumClocks; c++ {
		p.clocks[c] = clocks.WithLabelValues(c.String())
	}
	p.clocksBehind = clocks.WithLabelValues("behind")
	p.unacked = prometheus.NewCounter(unackedDesc) // unacked.go
	if reg != nil {
		reg.MustRegister(p.evals, p.dups, p.late, clocks, p.unacked)
	}
	return p
}

// adoptEngine puts e, a rule engine compiled by a reload (p.next), in
// force between two messages, with the old engine's state; p.mu is held.
func (p *Pipeline) adoptEngine(e *rules.Engine) {
	e.Adopt(p.eng)
	p.eng = e
	if p.swapped != nil {
		p.swapped(e)
	}
}

// stampOf fills the pipeline's admission stamp from decoded message m and
// returns it. Field by field: a composite literal is built in a temporary
// and copied, a store-forwarding stall per message (as in rules.Admit).
func (p *Pipeline) stampOf(m *ingest.Message) *rules.Stamp {
	st := &p.stamp
	st.Time, st.Recv, st.Seq, st.HasSeq, st.Digest = m.Time, m.Recv, m.Seq, m.HasSeq, m.Digest
	st.HasTS, st.Trusted, st.Suspect, st.Replay = m.Clock != ingest.ClockNone, m.Clock.Trusted(), m.Clock.Suspect(), m.Batch
	return st
}

// handle is the hot path of one message (Handle without the routing and
// the wait for stored alarms). When it returns, the message's readings are
// in the InfluxDB writer's batch and its events in the alarm manager's
// queue.
func (p *Pipeline) handle(topic string, payload []byte) { p.handleFrom(topic, payload, false, 0) }

// handleFrom is handle; relayed says an intermediary pushed the message on
// the device's behalf (Message.Relayed), at says when it was received
// (Message.Recv: zero is now, a time after now is now).
func (p *Pipeline) handleFrom(topic string, payload []byte, relayed bool, at int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.next.Swap(nil); e != nil {
		p.adoptEngine(e)
	}
	p.stats.Messages.Inc()
	now := p.clock.now()
	recv := now
	if at != 0 && at < now {
		recv = at // it waited in a stream: judged at its arrival (issue 15)
	}
	if p.edge != nil {
		if gw, ok := isGatewayStatus(topic); ok {
			p.edge.Status(gw, payload, recv)
		} else if gw, ok := isGatewayBatch(topic); ok {
			p.edge.Heard(gw, recv) // the gateway's own liveness
		}
	}
	msgs, rejects := p.dec.Decode(topic, payload, recv)
	for _, r := range rejects {
		p.stats.Reject(r, topic)
	}
	p.buf = p.buf[:0]
	n := 0
	for i := range msgs {
		m := &msgs[i]
		metrics, values := p.dec.Values(m)
		if len(metrics) == 0 {
			if absent := p.dec.Absent(m); len(absent) > 0 && p.edge != nil {
				p.edge.Readings(m.Device, m.Channel, m.Time, nil, absent)
			}
			if p.live != nil { // a bare heartbeat
				if !m.Batch && !relayed {
					p.live.SeenAt(m.Device.Index, recv, now)
				} else if at := heartbeatAt(m, relayed, recv); at > 0 {
					p.live.SeenAt(m.Device.Index, at, now)
				}
			}
			continue
		}
		v, evs := p.eng.AdmitStamp(m.Device.Index, p.stampOf(m), p.events[:0])
		for _, ev := range evs {
			p.out.Submit(ev) // a clock fault raised or cleared
		}
		if m.Clock.Suspect() {
			p.clocks[m.Clock].Inc()
		} else if v.Behind {
			p.clocksBehind.Inc()
		}
		if p.live != nil {
			// A message on the device's own topic is proof of life at its
			// receive time (now, or its arrival in the stream, learnt
			// now), whatever its clock says and even when it repeats one;
			// what a gateway or a platform brings counts at its device
			// time (relayedAt, issue 14).
			if !m.Batch && !relayed {
				p.live.SeenAt(m.Device.Index, recv, now)
			} else if at := relayedAt(m, v, relayed, recv); at > 0 {
				p.live.SeenAt(m.Device.Index, at, now)
			}
		}
		switch v.Admission {
		case rules.Duplicate:
			p.dups.Inc()
			continue // evaluated and stored before
		case rules.Late, rules.Unordered, rules.Superseded:
			p.late.Inc() // an older message: says nothing about the device now
		default:
			if p.live != nil {
				p.live.Vitals(m.Device.Index, metrics, values)
			}
			if p.edge != nil {
				p.edge.Readings(m.Device, m.Channel, m.Time, metrics, p.dec.Absent(m))
			}
		}
		r := devices.Reading{Time: v.Time, Seq: m.Seq, Device: m.Device.Index, Kind: m.Device.Kind, Channel: m.Channel}
		for j, metric := range metrics {
			r.Metric, r.Value = metric, values[j]
			p.events = p.eng.Eval(r, v.Admission, p.events[:0])
			for _, ev := range p.events {
				p.out.Submit(ev)
			}
		}
		n += len(metrics)
		p.buf = p.enc.AppendLine(p.buf, m.Device.Index, m.Channel, metrics, values, v.Time)
	}
	if n > 0 {
		// Counted once written, so that a reader of the counter may flush
		// the writer and find every counted reading in it.
		p.lines.Write(p.buf)
		p.stats.Readings.Add(float64(n))
		p.evals.Add(float64(n))
	}
}
