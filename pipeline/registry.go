package pipeline

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/rules"
)

// Live registry changes (issue 18). A change of the registry
// (devices.Live.Apply) is adopted between two messages, as a rule reload
// is, by the goroutine that applies it: it takes the pipeline's message
// lock (p.mu, which every message holds while it is handled), the decoder,
// encoder, rule engine, liveness and edge faults take the new snapshot,
// and the lock is released. No message is handled half with the old
// registry and half with the new, none is lost or evaluated twice, and the
// hot path pays nothing per message for it: the adoption waits for the
// message in progress instead of each message checking for a change.
//
// What the messages wait for is kept small: a change that edits or removes
// devices keeps the rule engine (its state is by device index, which the
// change keeps); one that adds devices grows the engine, the encoder and
// the per-device tables in place, for the added devices only (amortized);
// only a change that resets a device's rule state, or one that meets a
// rule reload waiting to be adopted, compiles a new engine — off the hot
// path — which takes the old one's state under the lock
// (rules.Engine.AdoptLedger: a copy of every device's state, as a reload).
//
//   - an added device is decoded, evaluated and tracked for liveness from
//     the next message (heard "now", as at start);
//   - an edited device keeps its rule state — a pending `for`, an alarm
//     firing — unless its kind, channels or rule overrides changed
//     (devices.Diff.Reset): then its rule state restarts (its admission
//     state, the dedup window and clock, stays);
//   - a removed device's messages are rejected as unknown (counted as
//     unknown_device) and its liveness stops: no offline alarm for it.

// registryState is the pipeline's side of live registry changes; its
// fields are guarded by mu (not p.mu: they are what the next message will
// see, not what the message in progress sees).
type registryState struct {
	mu sync.Mutex
	// set and ledger are the newest rule set and registry snapshot, in
	// force or about to be; eng is the engine compiled from both.
	set    *rules.Set
	ledger *devices.Ledger
	eng    *rules.Engine
	// adopted counts registry changes in force; stall is how long the
	// last one held the messages back (the hand-over under p.mu), in ns.
	adopted atomic.Uint64
	stall   atomic.Int64
}

// Follow subscribes the pipeline to lv, whose current snapshot must be the
// ledger the pipeline was made with: every change applied to lv is in
// force in the pipeline when lv.Apply returns. Subscribe the pipeline
// before the broker's authentication, so that a new device's first
// message is not refused as unknown (subscribers run in order).
func (p *Pipeline) Follow(lv *devices.Live) {
	lv.Subscribe(func(old, new *devices.Ledger, d *devices.Diff) { p.AdoptLedger(new, d) })
}

// CheckDevices reports the devices of l that Diff d adds or edits whose own
// rule overrides do not compile against the rules in force (a rule id of
// another kind, a malformed override), as a *devices.LoadError whose
// problems name the device and the field "rules"; nil if none. The registry's validation cannot know the rule set: call it before
// a change is committed.
func (p *Pipeline) CheckDevices(l *devices.Ledger, d *devices.Diff) error {
	p.reg.mu.Lock()
	eng := p.reg.eng
	p.reg.mu.Unlock()
	var probs []devices.Problem
	check := func(is []devices.Index) {
		for _, i := range is {
			if int(i) >= len(l.Devices) || l.Devices[i].Removed {
				continue
			}
			dv := &l.Devices[i]
			err := eng.CheckDevice(dv)
			var le *devices.LoadError
			switch {
			case errors.As(err, &le):
				for _, pr := range le.Problems {
					pr.File, pr.Section, pr.Index, pr.ID, pr.Field = l.File, "devices", -1, dv.ID, "rules"
					probs = append(probs, pr)
				}
			case err != nil:
				probs = append(probs, devices.Problem{File: l.File, Reason: err.Error(), Section: "devices", Index: -1, ID: dv.ID, Field: "rules"})
			}
		}
	}
	check(d.Added)
	check(d.Edited)
	if len(probs) > 0 {
		return &devices.LoadError{Problems: probs}
	}
	return nil
}

// AdoptLedger puts the registry snapshot l, made by Diff d from the one in
// force, in force between two messages, and returns once it is. Changes
// must come one at a time, in order (devices.Live serialises them).
func (p *Pipeline) AdoptLedger(l *devices.Ledger, d *devices.Diff) {
	start := time.Now()
	p.reg.mu.Lock()
	defer p.reg.mu.Unlock()
	// Off the hot path: the engine for the new snapshot, with the newest
	// rule set (a reload waiting to be adopted included), and the tags.
	// An edit that resets no rule state and adds no device (a phone, an
	// address, a station, a removal) keeps the engine: its rule state is
	// by device index, which the change keeps.
	// A change that only adds devices grows the engine in place, between
	// two messages (rules.Engine.Grow: the added devices only); one that
	// resets a device's rule state (its layout may change), or that meets
	// a reload waiting to be adopted (compiled for the old snapshot),
	// compiles a new engine here.
	var eng *rules.Engine
	grow := len(d.Added) > 0 && len(d.Reset) == 0 && p.next.Load() == nil
	if len(d.Reset) > 0 || len(d.Added) > 0 && !grow {
		var err error
		eng, err = rules.NewEngineLenient(p.reg.set, l)
		if eng == nil {
			// Not a device's overrides: the arena would overflow. The
			// change is in the registry already; keep evaluating the
			// devices known.
			p.log.Error("registry change NOT in force in the pipeline: the rule engine cannot be compiled for it; restart firewatch", "err", err)
			return
		}
		if err != nil {
			p.log.Error("registry change in force, but some devices' own rule overrides do not compile against the rules in force: those devices are evaluated with the rules of their kind", "err", err)
		}
	}
	var enc *influx.Encoder
	if TagsEdited(p.reg.ledger, l, d) {
		enc = influx.NewEncoder(l)
	}
	compiled := time.Since(start)

	p.mu.Lock() // between two messages
	held := time.Now()
	now := p.clock.now()
	var growErr error
	if grow { // p.next is still nil: the reloader stores it under p.reg.mu
		growErr = p.eng.Grow(l)
	}
	if eng != nil {
		eng.AdoptLedger(p.eng, d.Reset)
		p.eng = eng
		// A reloaded engine still waiting was compiled for the old
		// snapshot; eng has its rules.
		if p.next.Swap(nil) != nil && p.swapped != nil {
			p.swapped(eng)
		}
	}
	p.dec.SetLedger(l)
	if enc != nil {
		p.enc = enc
	} else if len(d.Added) > 0 {
		p.enc.Grow(l) // the added devices' tags only
	}
	p.ledger = l
	if p.edge != nil {
		p.edge.adoptLedger(l, d, now)
	}
	var liveErr error
	if p.live != nil {
		liveErr = p.live.Adopt(l, d.Edited, d.Removed, now)
	}
	p.mu.Unlock()
	stall := time.Since(held)

	p.reg.ledger = l
	if eng != nil {
		p.reg.eng = eng
	}
	p.reg.stall.Store(int64(stall))
	p.reg.adopted.Add(1)
	if growErr != nil {
		p.log.Error("registry change in force, but some added devices' own rule overrides do not compile against the rules in force: those devices are evaluated with the rules of their kind", "err", growErr)
	}
	if liveErr != nil {
		p.log.Error("registry change: liveness of an added or edited device not tracked", "err", liveErr)
	}
	p.log.Info("registry change in force", "version", l.Version(), "added", len(d.Added), "edited", len(d.Edited),
		"reset", len(d.Reset), "removed", len(d.Removed), "compile", compiled, "stall", stall, "took", time.Since(start))
}

// TagsEdited reports whether change d, which made l from old, changes
// the InfluxDB tags of a device it edits (its kind or grid): then the
// line-protocol encoder is made again (influx.NewEncoder); devices it
// only adds are added to it (Encoder.Grow).
func TagsEdited(old, l *devices.Ledger, d *devices.Diff) bool {
	for _, i := range d.Edited {
		if int(i) >= len(old.Devices) {
			return true
		}
		o, n := &old.Devices[i], &l.Devices[i]
		if o.ID != n.ID || o.Kind != n.Kind || o.Grid != n.Grid {
			return true
		}
	}
	return false
}

// LedgerChanges is how many registry changes are in force since start.
func (p *Pipeline) LedgerChanges() uint64 { return p.reg.adopted.Load() }

// adoptLedger takes a new registry snapshot; the pipeline holds p.mu.
func (ef *edgeFaults) adoptLedger(l *devices.Ledger, d *devices.Diff, now int64) {
	ef.mu.Lock()
	defer ef.mu.Unlock()
	ef.ledger = l
	if la, ok := ef.offline.(*livenessAlarms); ok {
		la.ledger.Store(l)
	}
	if n := len(l.Devices); n > cap(ef.openDev) {
		od := make([]atomic.Int32, n, n+n/4+64) // room for the next changes
		for i := range ef.openDev {
			od[i].Store(ef.openDev[i].Load())
		}
		ef.openDev = od
	} else if n > len(ef.openDev) {
		ef.openDev = ef.openDev[:n]
	}
	// Gateways new to the registry, or newly named by a device: heard now.
	for _, is := range [][]devices.Index{d.Added, d.Edited} {
		for _, i := range is {
			if gw := l.Devices[i].Gateway; gw != "" && ef.gws[gw] == nil {
				g := &gwLive{}
				g.heard.Store(now)
				ef.gws[gw] = g
			}
		}
	}
	for _, i := range d.Removed {
		delete(ef.held, i)
		delete(ef.heldSince, i)
	}
}
