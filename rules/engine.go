package rules

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// The state of one rule on one device channel is one or more 4-byte slots
// in the engine's arena. The first slot holds bit 31 "firing" and, in bits
// 0..30, a device time in milliseconds after the device's base time, plus
// one (0 = none): while idle, when the condition began (pending `for`);
// while firing, when it began to end (pending `clear_for`). Rate rules use
// four more slots: the reference reading (time, float32 value) and the
// previous reading.
const (
	firingBit uint32 = 1 << 31
	timeMask  uint32 = firingBit - 1
	// maxRel is the largest relative time a slot holds (24.8 days); the
	// device's base moves forward before it is reached.
	maxRel = int64(timeMask) - 1
	// baseLag puts a device's base this far before its first reading, so
	// that replays up to six days old still have a relative time.
	baseLag = int64(1) << 29
)

// Admission is the engine's verdict on a message before its readings are
// evaluated: see Admit.
type Admission uint8

// Admissions.
const (
	// Fresh readings are evaluated by every rule.
	Fresh Admission = iota
	// Late readings are older than the newest already evaluated for the
	// device: only event rules see them.
	Late
	// Duplicate messages were evaluated before (same sequence number,
	// not newer): no rule sees them.
	Duplicate
)

// compiled is a rule variant as the evaluator sees it.
type compiled struct {
	rule       *Rule
	threshold  float64
	clear      float64
	forMs      int64
	clearForMs int64
	withinMs   int64
	when       *Window
	op         Op
	// width is the number of slots per channel.
	width uint8
}

// place is where a rule position of a kind lives in a device's block.
type place struct {
	offset uint32
	rule   uint16 // index into Engine.rules: the device's variant
	// channels is how many channels the device has for the rule; 0 means
	// the rule is off for the device.
	channels uint8
}

// layout is shared by every device of the same kind, channel count and
// rule variants: usually a handful for a whole fleet.
type layout struct {
	kind   devices.Kind
	places []place
	size   uint32
}

// devState is the fixed per-device part of the state: 32 bytes.
type devState struct {
	base int64  // device time (Unix ms) that relative times count from
	seen uint64 // sequence window: bit i set = seq-i was evaluated
	last uint32 // newest evaluated device time, relative (0 = none yet)
	seq  uint32 // newest sequence number
	// slot is the device's first slot in the arena.
	slot   uint32
	layout uint16
	flags  uint16
}

const (
	flagBase uint16 = 1 << iota
	flagSeq
)

// Engine evaluates readings against a compiled rule set. It keeps the
// state of every (device, rule, channel) in one preallocated arena.
//
// Admit and Eval are not safe for concurrent use: the ingest pipeline
// calls them from one goroutine, which also swaps in a reloaded engine
// (Adopt) between two messages.
type Engine struct {
	set    *Set
	zoneMs int64
	rules  []compiled
	// byMetric lists, per metric, the positions in its kind's rule list.
	byMetric [][]uint16
	// kindRules is the base rule of each position, per kind.
	kindRules [devices.NumKinds][]*Rule
	layouts   []layout
	dev       []devState
	states    []uint32
}

// NewEngine compiles set for the devices of l, applying per-model
// overrides of the set and per-device overrides of the ledger. A wrong
// device override is reported with its ledger line.
func NewEngine(set *Set, l *devices.Ledger) (*Engine, error) {
	_, off := time.Unix(0, 0).In(set.zone()).Zone()
	e := &Engine{set: set, zoneMs: int64(off) * 1000, byMetric: make([][]uint16, devices.NumMetrics)}
	for _, r := range set.Rules {
		pos := len(e.kindRules[r.Kind])
		if pos >= math.MaxUint16 {
			return nil, fmt.Errorf("compile rules: too many rules for %s", r.Kind)
		}
		e.kindRules[r.Kind] = append(e.kindRules[r.Kind], r)
		e.byMetric[r.Metric] = append(e.byMetric[r.Metric], uint16(pos))
	}
	c := compiler{e: e, variants: map[string]uint16{}, layouts: map[string]uint16{}, plain: map[[2]uint8]uint16{}}
	e.dev = make([]devState, len(l.Devices))
	var probs []devices.Problem
	var total uint64
	for i := range l.Devices {
		d := &l.Devices[i]
		li, err := c.layoutOf(d)
		if err != nil {
			var le *devices.LoadError
			if errors.As(err, &le) {
				for _, p := range le.Problems {
					p.File = l.File
					probs = append(probs, p)
				}
				continue
			}
			return nil, err
		}
		e.dev[i] = devState{slot: uint32(total), layout: li}
		total += uint64(e.layouts[li].size)
		if total > math.MaxUint32 {
			return nil, fmt.Errorf("compile rules: %d state slots exceed the arena's 32-bit index", total)
		}
	}
	if len(probs) > 0 {
		return nil, &devices.LoadError{Problems: probs}
	}
	e.states = make([]uint32, total)
	return e, nil
}

// compiler builds variants and layouts, sharing them between devices.
type compiler struct {
	e        *Engine
	variants map[string]uint16
	layouts  map[string]uint16
	// plain caches the layout of devices without overrides, by kind and
	// channel count: most of a fleet takes this path.
	plain map[[2]uint8]uint16
	key   []byte
	vars  []uint16
}

// layoutOf returns the layout index of d, building it if it is new.
func (c *compiler) layoutOf(d *devices.Device) (uint16, error) {
	e := c.e
	_, hasModel := e.set.Models[d.Model]
	plain := !hasModel && len(d.Rules) == 0
	pk := [2]uint8{uint8(d.Kind), d.Channels}
	if li, ok := c.plain[pk]; ok && plain {
		return li, nil
	}
	var probs []devices.Problem
	c.vars = c.vars[:0]
	c.key = append(c.key[:0], byte(d.Kind), d.Channels)
	for _, r := range e.kindRules[d.Kind] {
		v := r
		if !plain {
			var err error
			if v, err = e.variant(r, d); err != nil {
				line := d.Line
				if n, ok := d.Rules[r.ID]; ok {
					line = n.Line
				}
				probs = append(probs, devices.Problem{Line: line, Reason: fmt.Sprintf("device %q: %v", d.ID, err)})
				v = r
			}
		}
		vk := variantKey(v)
		vi, ok := c.variants[vk]
		if !ok {
			if len(e.rules) >= math.MaxUint16 {
				return 0, errors.New("compile rules: more than 65535 rule variants")
			}
			vi = uint16(len(e.rules))
			c.variants[vk] = vi
			e.rules = append(e.rules, compile(v))
		}
		c.vars = append(c.vars, vi)
		c.key = strconv.AppendUint(append(c.key, ','), uint64(vi), 10)
	}
	for _, id := range sortedKeys(d.Rules) {
		if !e.hasRule(d.Kind, id) {
			n := d.Rules[id]
			probs = append(probs, devices.Problem{Line: n.Line, Reason: fmt.Sprintf("device %q: no %s rule %q to override", d.ID, d.Kind, id)})
		}
	}
	if len(probs) > 0 {
		return 0, &devices.LoadError{Problems: probs}
	}
	li, ok := c.layouts[string(c.key)]
	if !ok {
		if len(e.layouts) >= math.MaxUint16 {
			return 0, errors.New("compile rules: more than 65535 distinct device layouts")
		}
		li = uint16(len(e.layouts))
		c.layouts[string(c.key)] = li
		e.layouts = append(e.layouts, e.newLayout(d, c.vars))
	}
	if plain {
		c.plain[pk] = li
	}
	return li, nil
}

func (s *Set) zone() *time.Location {
	if s.Zone == nil {
		z, _ := ParseZone("")
		return z
	}
	return s.Zone
}

func (e *Engine) hasRule(k devices.Kind, id string) bool {
	for _, r := range e.kindRules[k] {
		if r.ID == id {
			return true
		}
	}
	return false
}

// variant applies the model's and the device's overrides to r.
func (e *Engine) variant(r *Rule, d *devices.Device) (*Rule, error) {
	v := r
	if o, ok := e.set.Models[d.Model][r.ID]; ok {
		var err error
		if v, err = o.Apply(v); err != nil {
			return nil, fmt.Errorf("model %s: %w", d.Model, err)
		}
	}
	if n, ok := d.Rules[r.ID]; ok {
		o, err := ParseOverride(&n)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.ID, err)
		}
		if v, err = o.Apply(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// variantKey identifies a rule variant: the base rule and what overrides
// changed.
func variantKey(r *Rule) string {
	var b strings.Builder
	b.WriteString(r.ID)
	for _, f := range []float64{r.Threshold, r.Clear, float64(r.For), float64(r.ClearFor)} {
		b.WriteByte('|')
		b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
	}
	if r.Off || r.PerDevice {
		b.WriteString("|off")
	}
	return b.String()
}

func compile(r *Rule) compiled {
	c := compiled{
		rule: r, threshold: r.Threshold, clear: r.Clear, op: r.Op, when: r.When,
		forMs: r.For.Milliseconds(), clearForMs: r.ClearFor.Milliseconds(), withinMs: r.Within.Milliseconds(), width: 1,
	}
	if r.Op == OpRises || r.Op == OpFalls {
		c.width = 5
	}
	return c
}

func (e *Engine) newLayout(d *devices.Device, vars []uint16) layout {
	lay := layout{kind: d.Kind, places: make([]place, len(vars))}
	for j, vi := range vars {
		c := &e.rules[vi]
		ch := c.rule.Metric.Info().Channels
		if d.Channels > 0 && d.Channels < ch {
			ch = d.Channels
		}
		if c.rule.Off || c.rule.PerDevice {
			ch = 0 // no state: the rule is off for this device
		}
		lay.places[j] = place{offset: lay.size, rule: vi, channels: ch}
		lay.size += uint32(ch) * uint32(c.width)
	}
	return lay
}

// StateBytes is the memory the engine holds for per-device state.
func (e *Engine) StateBytes() int {
	n := len(e.states)*4 + len(e.dev)*32
	for i := range e.layouts {
		n += len(e.layouts[i].places) * 8
	}
	return n
}

// Admit decides, once per message, whether its readings are fresh, late or
// a duplicate, from the device time t (Unix ms) and the sequence number.
//
// A message is a duplicate when its seq is among the last 64 evaluated for
// the device and its time is not newer than the newest evaluated: a
// gateway's replay of what already arrived. A seen seq with a newer time is
// a device that restarted its counter, and is evaluated. A message older
// than the newest evaluated one is late.
func (e *Engine) Admit(dev devices.Index, t int64, seq uint32, hasSeq bool) Admission {
	ds := &e.dev[dev]
	if ds.flags&flagBase == 0 {
		ds.base = t - baseLag
		ds.flags |= flagBase
	}
	if t-ds.base > maxRel {
		e.rebase(ds, t-baseLag)
	}
	rel := e.rel(ds, t)
	newer := rel > ds.last
	if hasSeq {
		d := int32(seq - ds.seq)
		switch {
		case ds.flags&flagSeq == 0 || (d > 0 && d >= 64):
			ds.seq, ds.seen = seq, 1
			ds.flags |= flagSeq
		case d > 0:
			ds.seq, ds.seen = seq, ds.seen<<uint(d)|1
		case d > -64:
			bit := uint64(1) << uint(-d)
			if ds.seen&bit != 0 && !newer {
				return Duplicate
			}
			if ds.seen&bit != 0 || newer {
				ds.seq, ds.seen = seq, 1 // the device restarted its counter
			} else {
				ds.seen |= bit
			}
		default:
			if newer {
				ds.seq, ds.seen = seq, 1 // restarted long ago, or wrapped
			}
		}
	}
	if rel < ds.last {
		return Late
	}
	ds.last = rel
	return Fresh
}

// rel is t relative to the device's base, plus one, clamped to a slot.
func (e *Engine) rel(ds *devState, t int64) uint32 {
	r := t - ds.base + 1
	if r < 1 {
		return 1
	}
	if r > int64(timeMask) {
		return timeMask
	}
	return uint32(r)
}

// rebase moves a device's base forward to nb, shifting every time it holds.
func (e *Engine) rebase(ds *devState, nb int64) {
	shift := nb - ds.base
	move := func(v uint32) uint32 {
		if v == 0 {
			return 0
		}
		r := int64(v) - shift
		if r < 1 {
			return 1
		}
		return uint32(r)
	}
	ds.base = nb
	ds.last = move(ds.last)
	lay := &e.layouts[ds.layout]
	for _, p := range lay.places {
		c := &e.rules[p.rule]
		for ch := uint32(0); ch < uint32(p.channels); ch++ {
			s := e.states[ds.slot+p.offset+ch*uint32(c.width):]
			s[0] = s[0]&firingBit | move(s[0]&timeMask)
			if c.width == 5 {
				s[1], s[3] = move(s[1]), move(s[3])
			}
		}
	}
}

// Eval evaluates one reading of a message that Admit judged, and appends
// the transitions it causes to out. It does not allocate when out has room.
func (e *Engine) Eval(r devices.Reading, adm Admission, out []Event) []Event {
	pos := e.byMetric[r.Metric]
	if len(pos) == 0 || adm == Duplicate {
		return out
	}
	ds := &e.dev[r.Device]
	lay := &e.layouts[ds.layout]
	ch := uint8(0)
	if r.Channel > 0 {
		ch = r.Channel - 1
	}
	// Events name the channel as the state does: 1… for channelled
	// metrics (a reading without ch is channel 1), 0 for the others, so
	// that a raise and its clear always carry the same key.
	evCh := uint8(0)
	if r.Metric.Info().Channels > 1 {
		evCh = ch + 1
	}
	rel := e.rel(ds, r.Time)
	for _, p := range pos {
		pl := lay.places[p]
		if ch >= pl.channels {
			continue
		}
		c := &e.rules[pl.rule]
		if adm == Late && c.op != OpEvent {
			continue
		}
		i := ds.slot + pl.offset + uint32(ch)*uint32(c.width)
		var t Transition
		var since uint32
		var ref float64
		if c.width == 1 {
			t, since = c.step(&e.states[i], r, rel, e.zoneMs)
		} else {
			t, since, ref = c.rate(e.states[i:i+5], r, rel, e.zoneMs)
		}
		if t != 0 {
			out = append(out, Event{
				Rule: c.rule, Device: r.Device, Channel: evCh, Transition: t,
				Value: r.Value, Ref: ref, Since: ds.base + int64(since) - 1, Time: r.Time, Seq: r.Seq,
			})
		}
	}
	return out
}

// inForce reports whether a windowed rule applies at device time t.
func (c *compiled) inForce(t, zoneMs int64) bool {
	return c.when == nil || c.when.contains(t+zoneMs)
}

// step advances a threshold or event rule. It returns a transition and the
// relative time the transition's condition began.
func (c *compiled) step(st *uint32, r devices.Reading, rel uint32, zoneMs int64) (Transition, uint32) {
	v := r.Value
	on := c.inForce(r.Time, zoneMs)
	if *st&firingBit != 0 {
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
		if !stop && on {
			*st = firingBit // the end, if it was beginning, did not hold
			return 0, 0
		}
		since := *st & timeMask
		if since == 0 {
			since = rel
			*st = firingBit | rel
		}
		if int64(rel)-int64(since) >= c.clearForMs || !on || c.op == OpEvent {
			*st = 0
			return Clear, since
		}
		return 0, 0
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
	if !cond || !on {
		*st = 0
		return 0, 0
	}
	since := *st & timeMask
	if since == 0 || since > rel {
		since = rel
		*st = rel
	}
	if int64(rel)-int64(since) >= c.forMs {
		*st = firingBit
		return Raise, since
	}
	return 0, 0
}

// rate advances a rises/falls rule. s[1], s[2] hold the reference reading
// (time, float32 value): the extreme of the current window, from which the
// change is measured; s[3], s[4] the previous reading, which becomes the
// reference when the old one leaves the window.
func (c *compiled) rate(s []uint32, r devices.Reading, rel uint32, zoneMs int64) (Transition, uint32, float64) {
	v := r.Value
	if v != v || math.IsInf(v, 0) {
		return 0, 0, 0
	}
	refT, refV := s[1], math.Float32frombits(s[2])
	prevT, prevV := s[3], math.Float32frombits(s[4])
	s[3], s[4] = rel, math.Float32bits(float32(v))
	if refT == 0 || int64(rel)-int64(refT) > c.withinMs {
		refT, refV = rel, float32(v)
		if prevT != 0 && int64(rel)-int64(prevT) <= c.withinMs {
			refT, refV = prevT, prevV
		}
	}
	change := v - float64(refV)
	if c.op == OpFalls {
		change = -change
	}
	// A new extreme in the direction away from the change restarts it.
	if change < 0 {
		refT, refV, change = rel, float32(v), 0
	}
	s[1], s[2] = refT, math.Float32bits(refV)
	cond := change >= c.threshold-1e-9*math.Abs(c.threshold) && c.inForce(r.Time, zoneMs)
	firing := s[0]&firingBit != 0
	switch {
	case cond && !firing:
		s[0] = firingBit | rel
		return Raise, refT, float64(refV)
	case firing && !cond && int64(rel)-int64(s[0]&timeMask) >= c.withinMs:
		// A whole window passed since the change without another.
		since := s[0] & timeMask
		s[0] = 0
		return Clear, since, float64(refV)
	case firing && cond:
		s[0] = firingBit | rel
	}
	return 0, 0, 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
