package rules

import (
	"fmt"

	"github.com/firewatch-iot/firewatch/devices"
)

// state is the packed state of one rule on one device channel: 8 bytes.
// Bit 63 says the rule is firing; the low bits hold the device time (Unix
// ms, plus one so that zero means idle) at which the condition began.
type state uint64

const firingBit state = 1 << 63

func (s state) firing() bool  { return s&firingBit != 0 }
func (s state) holding() bool { return s&^firingBit != 0 }
func (s state) since() int64  { return int64(s&^firingBit) - 1 }
func holdingSince(t int64) state {
	return state(t+1) &^ firingBit
}

// compiled is a rule as the evaluator sees it.
type compiled struct {
	rule      *Rule
	threshold float64
	clear     float64
	forMs     int64
	op        Op
	channels  uint8
	// offset is the index of the rule's first channel slot in a device's
	// block of states.
	offset uint32
}

// Engine evaluates readings against a compiled rule set. It keeps the
// state of every (device, rule, channel) in one preallocated arena.
//
// Eval is not safe for concurrent use: the ingest pipeline calls it from one
// goroutine.
type Engine struct {
	rules []compiled
	// byMetric lists, per metric, the indices in rules that watch it.
	byMetric [][]uint16
	// perKind is the number of state slots a device of each kind needs.
	perKind [devices.NumKinds]uint32
	// base is the first state slot of each device.
	base   []uint32
	states []state
	// last is the newest device time (Unix ms) evaluated per device.
	last []int64
}

// NewEngine compiles set for the devices of l.
func NewEngine(set *Set, l *devices.Ledger) (*Engine, error) {
	if len(set.Rules) > 1<<16 {
		return nil, fmt.Errorf("compile rules: %d rules is more than 65536", len(set.Rules))
	}
	e := &Engine{byMetric: make([][]uint16, devices.NumMetrics)}
	for _, r := range set.Rules {
		ch := r.Metric.Info().Channels
		c := compiled{
			rule: r, threshold: r.Threshold, clear: r.Clear, forMs: r.For.Milliseconds(),
			op: r.Op, channels: ch, offset: e.perKind[r.Kind],
		}
		e.perKind[r.Kind] += uint32(ch)
		e.byMetric[r.Metric] = append(e.byMetric[r.Metric], uint16(len(e.rules)))
		e.rules = append(e.rules, c)
	}
	e.base = make([]uint32, len(l.Devices))
	e.last = make([]int64, len(l.Devices))
	var n uint64
	for i := range l.Devices {
		e.base[i] = uint32(n)
		n += uint64(e.perKind[l.Devices[i].Kind])
	}
	if n > 1<<32-1 {
		return nil, fmt.Errorf("compile rules: %d state slots exceed the arena's 32-bit index", n)
	}
	e.states = make([]state, n)
	return e, nil
}

// StateBytes is the memory the engine holds for per-device state.
func (e *Engine) StateBytes() int {
	return len(e.states)*8 + len(e.base)*4 + len(e.last)*8
}

// Eval evaluates one reading and appends the transitions it causes to out.
// It does not allocate when out has room.
//
// Readings older than the newest one already evaluated for the device (a
// replay from a gateway, a reordering between topics) are not evaluated
// against threshold rules: they cannot start or end a condition that later
// readings have already decided. Events are always evaluated, so a late
// smoke alarm is never dropped.
func (e *Engine) Eval(r devices.Reading, out []Event) []Event {
	idx := e.byMetric[r.Metric]
	if len(idx) == 0 {
		return out
	}
	late := r.Time < e.last[r.Device]
	if !late {
		e.last[r.Device] = r.Time
	}
	slot := uint32(0)
	if r.Channel > 0 {
		slot = uint32(r.Channel - 1)
	}
	base := e.base[r.Device]
	for _, i := range idx {
		c := &e.rules[i]
		if slot >= uint32(c.channels) || (late && c.op != OpEvent) {
			continue
		}
		st := &e.states[base+c.offset+slot]
		if t, ok := c.step(st, r); ok {
			out = append(out, Event{
				Rule: c.rule, Device: r.Device, Channel: r.Channel, Transition: t,
				Value: r.Value, Since: st.since(), Time: r.Time, Seq: r.Seq,
			})
			if t == Clear {
				*st = 0
			}
		}
	}
	return out
}

// step advances one state with one reading and reports a transition.
func (c *compiled) step(st *state, r devices.Reading) (Transition, bool) {
	v := r.Value
	if st.firing() {
		var stop bool
		switch c.op {
		case OpAbove:
			stop = v < c.clear
		case OpBelow:
			stop = v >= c.clear
		case OpEvent:
			stop = v == 0
		}
		// NaN compares false everywhere: it neither starts nor ends a
		// condition (the decoder rejects it anyway).
		return Clear, stop
	}
	var cond bool
	switch c.op {
	case OpAbove:
		cond = v >= c.threshold
	case OpBelow:
		cond = v < c.threshold
	case OpEvent:
		cond = v != 0 && v == v
	}
	if !cond {
		*st = 0
		return 0, false
	}
	if !st.holding() {
		*st = holdingSince(r.Time)
	}
	if r.Time-st.since() >= c.forMs {
		*st |= firingBit
		return Raise, true
	}
	return 0, false
}
