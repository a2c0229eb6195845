package rules

import (
	"math"

	"github.com/firewatch-iot/firewatch/devices"
)

// Adopt takes over the state of old, an engine of an earlier rule set over
// the same ledger, so that a reload neither loses a pending `for` nor
// raises again what is firing. A rule keeps its state when a rule of the
// same id watching the same metric the same way (op) exists in both sets;
// its levels and durations may have changed, and the next reading is
// judged by the new ones. State of removed rules is dropped: their open
// alarms stay open until a person closes them or the rule returns.
//
// Adopt must run on the goroutine that calls Eval, between two messages.
func (e *Engine) Adopt(old *Engine) {
	if old == nil || len(old.dev) != len(e.dev) {
		return
	}
	e.adopt(old, nil)
}

// AdoptLedger is Adopt for an engine compiled over a newer snapshot of the
// registry, whose device indices extend old's (devices.Ledger.Apply keeps
// them stable; issue 18): every device of old keeps its state, by rule as
// Adopt does, except the rule state of the devices in reset (kind,
// channels or rule overrides changed), which restarts; their admission
// state (newest time, sequence window, clock) stays, so that no message
// is evaluated twice. Devices new to the registry start afresh.
//
// AdoptLedger must run on the goroutine that calls Eval, between two
// messages.
func (e *Engine) AdoptLedger(old *Engine, reset []devices.Index) {
	if old == nil || len(old.dev) > len(e.dev) {
		return
	}
	var skip map[devices.Index]bool
	if len(reset) > 0 {
		skip = make(map[devices.Index]bool, len(reset))
		for _, d := range reset {
			skip[d] = true
		}
	}
	e.adopt(old, skip)
}

// adopt copies old's state for every device of old, the rule state only
// for devices not in reset.
func (e *Engine) adopt(old *Engine, reset map[devices.Index]bool) {
	type pair struct{ from, to uint16 }
	plans := map[pair][]span{}
	plan := func(p pair) []span {
		if s, ok := plans[p]; ok {
			return s
		}
		s := e.spans(old, p.from, p.to)
		plans[p] = s
		return s
	}
	e.eras, e.skews = old.eras, old.skews // side tables, by device index
	// Most devices share a layout pair: remember the last plan rather
	// than look it up per device.
	last, lastPlan := pair{math.MaxUint16, math.MaxUint16}, []span(nil)
	for i := range old.dev {
		od, nd := &old.dev[i], &e.dev[i]
		slot, layout := nd.slot, nd.layout
		*nd = *od
		nd.slot, nd.layout = slot, layout
		if reset[devices.Index(i)] {
			continue
		}
		if k := (pair{od.layout, layout}); k != last {
			last, lastPlan = k, plan(k)
		}
		for _, s := range lastPlan {
			copy(e.states[slot+s.to:slot+s.to+s.n], old.states[od.slot+s.from:od.slot+s.from+s.n])
		}
	}
}

// Set returns the rule set the engine was compiled from.
func (e *Engine) Set() *Set { return e.set }
