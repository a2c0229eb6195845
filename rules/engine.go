package rules

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

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
// evaluated: see AdmitStamp.
type Admission uint8

// Admissions.
const (
	// Fresh readings are evaluated by every rule.
	Fresh Admission = iota
	// Late readings are older than the newest already evaluated for the
	// device, and really are older messages (a replay, a reordering):
	// only event rules see them, and only those whose last transition is
	// older still.
	Late
	// Duplicate messages are exact copies of one already evaluated (same
	// seq and content): no rule sees them, and they are not stored again.
	Duplicate
	// Unordered messages come from a gateway with a seq older than the
	// newest, never seen, and a ts that cannot place them (none believable,
	// or one at or after the newest): when in doubt, alarm. Event rules may
	// raise on them but not clear, threshold and rate rules do not see
	// them.
	Unordered
	// Superseded messages are replays from a gateway of a seq among the
	// last 64 evaluated, not exact copies (their ts may read otherwise
	// now that the clock went back, or the copy was not remembered).
	// Stored, but no rule sees them.
	Superseded
)

// ReorderTolerance is how much older than the device's newest message a
// message on the device's own topic may be and still count as reordered in
// transit. Older than that, it is a new message from a clock that went
// back (a step, a reset): it is evaluated at its receive time.
const ReorderTolerance = int64(60_000)

// ClockFaultAfter is how many messages in a row must come with a wrong
// clock (implausible, or behind the device's newest) before the device's
// clock fault (时钟异常) is raised.
const ClockFaultAfter = 3

// Stamp is what the engine needs to know of a message before its
// readings: when it says it happened, when it arrived, and its identity.
type Stamp struct {
	// Time is the device's ts (Unix ms) when Trusted, else the receive time
	// the reading stands at.
	Time int64
	// Recv is the receive time (Unix ms): the time a message from a clock
	// that went back is evaluated at.
	Recv int64
	Seq  uint32
	// HasSeq says the message carried seq; HasTS that it carried ts.
	HasSeq, HasTS bool
	// Trusted says Time is the device's own, plausible clock.
	Trusted bool
	// Suspect says the device's ts was implausible (ahead, before 2020,
	// older than the replay window on the device's own topic): Time is the
	// receive time, and it counts towards a clock fault.
	Suspect bool
	// Replay says the message came in a gateway batch, which may replay a
	// spool: an older ts with an older seq is an old message.
	Replay bool
	// Digest identifies the message's content (ts as sent, seq, channel,
	// metrics and values): with the seq it tells an exact duplicate from a
	// device that restarted its counter.
	Digest uint32
}

// Verdict is the engine's judgement of one message.
type Verdict struct {
	Admission
	// Time is the time (Unix ms) to evaluate and store the readings at.
	Time int64
	// Behind says the device's ts was behind its newest although the
	// message is new: its clock went back, and Time is the receive time.
	Behind bool
}

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

// devState is the fixed per-device part of the state: 48 bytes, 4-byte
// aligned (no 64-bit field). What a message without seq touches on the
// common path (AdmitStamp's fast path, Eval) comes first, in 20 bytes, so
// that it mostly lies in one cache line; a message with seq touches all
// but three digests. What only a clock that went back needs (its lag) is
// in a side table (Engine.skews), as are moved clocks (Engine.eras).
type devState struct {
	// base is the device time that relative times count from, in units of
	// 1<<baseShift ms (baseMs).
	base int32
	last uint32 // newest evaluated device time, relative (0 = none yet)
	// rskew (ms) is the receive clock's lead over the receive time: the
	// device's clock's lead when it was last right, or what it took to
	// keep the device's times from going back.
	rskew int32
	// slot is the device's first slot in the arena.
	slot   uint32
	layout uint16
	flags  uint16
	seq    uint32    // newest sequence number
	seen   [2]uint32 // sequence window, low and high half: bit i set = seq-i was evaluated
	// dig holds the digest of the last message of each seq modulo 4: a
	// message is an exact duplicate when its seq is in the window and its
	// digest is the one remembered for it.
	dig [4]uint32
}

// baseShift: a device's base is kept in units of 65,536 ms (int32: ±4,000
// years around 1970), so that the device state holds no 64-bit field.
const baseShift = 16

// baseMs is the device's base in Unix ms.
func (ds *devState) baseMs() int64 { return int64(ds.base) << baseShift }

// window is the sequence window as one word.
func (ds *devState) window() uint64 { return uint64(ds.seen[0]) | uint64(ds.seen[1])<<32 }

func (ds *devState) setWindow(w uint64) { ds.seen[0], ds.seen[1] = uint32(w), uint32(w>>32) }

const (
	flagBase uint16 = 1 << iota
	flagSeq
	flagClockFault // the clock fault (时钟异常) is raised
	flagBehind     // the device's clock is behind: skew applies
	flagEra        // the device's times were moved back (Engine.eras)
	// bits 5..6: wrong-clock messages in a row, up to ClockFaultAfter
	clockShift = 5
	clockMask  = uint16(3) << clockShift
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
	// clockRules are the rules of clock faults, per kind (ClockRuleID).
	clockRules [devices.NumKinds]*Rule
	// skews holds, for the devices whose clock is behind (flagBehind),
	// how far behind it was found when it last went back (receive time
	// minus ts, ms): a ts about that far behind is read on the receive
	// clock. Touched only off the fast path.
	skews map[devices.Index]int32
	// eras holds, for the devices whose clock lost a lead over the
	// receive time (flagEra), how far their times were moved back: see
	// handBack. Touched only off the fast path.
	eras map[devices.Index]era
	// comp keeps the compiler's shared variants and layouts, for Grow
	// (ledger.go).
	comp *compiler
}

// ClockRuleID is the rule id of the clock fault (时钟异常) of kind k, e.g.
// "smoke.clock": raised after ClockFaultAfter messages in a row with a
// wrong clock, cleared by the first message whose clock is right again.
func ClockRuleID(k devices.Kind) string { return k.String() + ".clock" }

// NewEngine compiles set for the devices of l, applying per-model
// overrides of the set and per-device overrides of the ledger. A wrong
// device override is reported with its ledger line.
func NewEngine(set *Set, l *devices.Ledger) (*Engine, error) { return newEngine(set, l, false) }

// newEngine is NewEngine; lenient compiles a device whose overrides are
// wrong with the rules of its kind and model, and still returns the
// problems (NewEngineLenient).
func newEngine(set *Set, l *devices.Ledger, lenient bool) (*Engine, error) {
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
	for k := devices.KindElectrical; k < devices.NumKinds; k++ {
		// The alarm path needs a metric of the kind, as for offline alarms.
		m, ok := devices.MetricByName(k, "heartbeat")
		if !ok {
			m, _ = devices.MetricByName(k, "rssi_dbm")
		}
		e.clockRules[k] = &Rule{ID: ClockRuleID(k), Kind: k, Metric: m, Op: OpEvent, Severity: SeverityFault,
			NoteZH: "时钟异常：设备时间与接收时间不符，暂按接收时间判定，请校准设备时钟"}
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
				if !lenient {
					continue
				}
				if li, err = c.plainLayout(d); err != nil {
					return nil, err
				}
			} else {
				return nil, err
			}
		}
		e.dev[i] = devState{slot: uint32(total), layout: li}
		total += uint64(e.layouts[li].size)
		if total > math.MaxUint32 {
			return nil, fmt.Errorf("compile rules: %d state slots exceed the arena's 32-bit index", total)
		}
	}
	if len(probs) > 0 && !lenient {
		return nil, &devices.LoadError{Problems: probs}
	}
	e.states = make([]uint32, total)
	e.comp = &c
	if len(probs) > 0 {
		return e, &devices.LoadError{Problems: probs}
	}
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
		// A ledger's channels counts the kind's sensors or slots: the
		// metrics with the kind's most channels (cable sensors, charging
		// slots), not the three phases of an electrical monitor.
		if d.Channels > 0 && d.Channels < ch && ch == maxChannels(d.Kind) {
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

// maxChannels is the largest channel count among the metrics of k.
func maxChannels(k devices.Kind) uint8 {
	var n uint8
	for _, m := range k.Metrics() {
		n = max(n, m.Info().Channels)
	}
	return n
}

// StateBytes is the memory the engine holds for per-device state.
func (e *Engine) StateBytes() int {
	n := len(e.states)*4 + len(e.dev)*int(unsafe.Sizeof(devState{}))
	for i := range e.layouts {
		n += len(e.layouts[i].places) * 8
	}
	return n
}

// Admit judges a message whose ts is trusted and which may be a replay (as
// from a gateway): AdmitStamp with Time = Recv = t and no digest. Tests and
// benchmarks use it.
func (e *Engine) Admit(dev devices.Index, t int64, seq uint32, hasSeq bool) Admission {
	// Field by field: a composite literal is built in a temporary and
	// copied, which costs a store-forwarding stall per call.
	var s Stamp
	s.Time, s.Recv, s.Seq = t, t, seq
	s.HasSeq, s.HasTS, s.Trusted, s.Replay = hasSeq, true, true, true
	v, _ := e.AdmitStamp(dev, &s, nil)
	return v.Admission
}

// AdmitStamp decides, once per message, whether its readings are fresh,
// late or a duplicate, and at what time they are evaluated; it appends a
// clock fault's raise or clear to out. It does not allocate when out has
// room.
//
//   - Duplicate: the seq is among the last 64 of the device and the digest
//     is the one remembered for it. Only exact copies are dropped; a seq
//     seen with other content is a device that restarted its counter.
//   - Late: ts is older than the device's newest, and the message really is
//     older: from a gateway with a seq not newer than the newest, or on the
//     device's own topic at most ReorderTolerance late and filling a gap of
//     the seq window. Only event rules see it.
//   - Fresh otherwise. A message whose ts is behind the newest but which is
//     new (a newer seq, a restarted counter, too late for a reordering) has
//     a clock that went back: it is evaluated at its receive time, and the
//     device's times move back with it so that no `for` is cut short.
func (e *Engine) AdmitStamp(dev devices.Index, s *Stamp, out []Event) (Verdict, []Event) {
	ds := &e.dev[dev]
	// The common case first: a trusted ts at or after the device's newest,
	// with the next seqs (or none), on a device whose clock is right and
	// counts no wrong message. It is what admitSlow does for such a
	// message, without the branches that cannot apply.
	if s.Trusted && !s.Suspect && ds.last != 0 && ds.flags&(flagBehind|clockMask|flagClockFault|flagEra) == 0 {
		t := s.Time
		if rel := t - ds.baseMs(); rel >= int64(ds.last)-1 && rel <= maxRel {
			if s.HasSeq {
				d := int32(s.Seq - ds.seq)
				if ds.flags&flagSeq == 0 || d <= 0 || d >= 64 {
					return e.admitSlow(dev, ds, s, out)
				}
				ds.seq = s.Seq
				ds.setWindow(ds.window()<<uint(d) | 1)
				ds.dig[s.Seq&3] = s.Digest
			}
			ds.rskew = int32(max(min(t-s.Recv, math.MaxInt32), 0))
			ds.last = uint32(rel + 1)
			return Verdict{Admission: Fresh, Time: t}, out
		}
	}
	return e.admitSlow(dev, ds, s, out)
}

// admitSlow is AdmitStamp for every message.
func (e *Engine) admitSlow(dev devices.Index, ds *devState, s *Stamp, out []Event) (Verdict, []Event) {
	if s.HasSeq && ds.flags&flagSeq != 0 {
		// Without ts two messages of a restarted counter can be identical:
		// then only a repeat of the newest is taken for a duplicate.
		if d := int32(s.Seq - ds.seq); d <= 0 && d > -64 && (s.HasTS || d == 0) && ds.window()&(uint64(1)<<uint(-d)) != 0 && ds.dig[s.Seq&3] == s.Digest {
			return Verdict{Admission: Duplicate, Time: s.Time}, out
		}
	}
	t := s.Time
	v := Verdict{Admission: Fresh}
	if ds.flags&flagBase == 0 {
		ds.base = int32((t - baseLag) >> baseShift)
		ds.flags |= flagBase
	}
	// In a gateway's batches seq order wins within the window: the gateway
	// numbers what it sends, and a replay carries the original seq. (Far
	// below the window is a gateway that lost its counter: time decides.)
	oldSeq := false
	if s.Replay && s.HasSeq && ds.flags&flagSeq != 0 {
		// (ds.seq is loaded only here: a message without seq does not
		// touch the window's cache line.)
		d := int32(s.Seq - ds.seq)
		oldSeq = d < 0 && d > -64
	}
	skewed := false
	if ds.last != 0 {
		lastAbs := ds.baseMs() + int64(ds.last) - 1
		if s.Trusted && ds.flags&flagEra != 0 {
			t = e.fromEra(dev, ds, s, lastAbs)
		}
		if s.Trusted && ds.flags&flagBehind != 0 && e.skewed(dev, s, t, lastAbs) {
			// While the clock is behind, a ts about as far behind as it
			// was found to be is read on the receive clock, so that a
			// reordering after the step is still judged by time. A ts
			// near the newest, or near the receive time when the newest
			// is ahead of it, is the clock set right again.
			t += int64(e.skews[dev])
			skewed = true
		}
		if t < lastAbs || oldSeq {
			switch {
			case oldSeq && ds.window()&(uint64(1)<<uint(ds.seq-s.Seq)) != 0:
				// Evaluated before: a gateway's replay (a gateway does
				// not reuse a seq), whatever its ts now reads as.
				v.Admission = Superseded
			case oldSeq && (t >= lastAbs || !s.Trusted):
				// Never seen, sent before the newest, but when is
				// unknown.
				v.Admission, t = Unordered, lastAbs
			case s.Trusted && s.Replay && (!s.HasSeq || ds.flags&flagSeq == 0) && t == s.Time && leadDropped(s, lastAbs):
				// A gateway's message without seq, behind the newest,
				// whose ts is nearer the receive time than the clock's
				// lead was: the clock set right, or a replay of what it
				// sent while ahead; nothing tells which. When in doubt,
				// alarm: it may raise an event, not clear one.
				v.Admission, t = Unordered, lastAbs
			case s.Trusted && (oldSeq || e.older(ds, s, t, lastAbs)):
				v.Admission = Late
			case s.Trusted && t == s.Time && lastAbs > s.Recv && e.handBack(dev, ds, s, &lastAbs) && t >= lastAbs:
				// A new message (its ts not read back by an era nor
				// forward by a lag) behind a newest that is ahead of the
				// receive time: a clock that ran ahead, set right. The
				// device's times moved back by the lead it lost, and it
				// stands at its ts.
			default:
				// A new message behind the newest: a clock that went
				// back (or a receive time behind a clock that was ahead).
				// It stands at its receive time on the device's receive
				// clock, which moves forward if need be so that it is
				// not behind the newest: what the engine holds keeps its
				// times, so that a replay from before the step is
				// judged right, and durations keep counting.
				v.Behind = s.Trusted
				t = e.recvTime(ds, s.Recv, lastAbs)
				if s.Trusted {
					if e.skews == nil {
						e.skews = make(map[devices.Index]int32)
					}
					e.skews[dev] = int32(max(min(t-s.Time, math.MaxInt32), 0))
				}
			}
		} else if !s.Trusted {
			t = e.recvTime(ds, s.Recv, lastAbs)
		}
	}
	if v.Admission == Fresh && s.Trusted && (skewed || v.Behind) {
		ds.flags |= flagBehind
	}
	if v.Admission == Fresh && s.Trusted && !skewed && !v.Behind {
		if ds.flags&flagBehind != 0 {
			ds.flags &^= flagBehind
			delete(e.skews, dev)
		}
		// A clock a little ahead of the receive time (within MaxFuture):
		// the receive clock keeps that lead, so that a message without a
		// believable ts that follows is not behind it.
		ds.rskew = int32(max(min(s.Time-s.Recv, math.MaxInt32), 0))
	}
	if b := ds.baseMs(); t-b > maxRel {
		e.moveBase(ds, b, t-baseLag)
	}
	v.Time = t
	if s.HasSeq && v.Admission != Superseded {
		e.window(ds, s, v.Admission == Fresh)
	}
	if v.Admission != Fresh {
		return v, out
	}
	ds.last = e.rel(ds, t)
	if wrong := v.Behind || skewed || s.Suspect; s.HasTS && (wrong || ds.flags&(clockMask|flagClockFault) != 0) {
		out = e.clock(dev, ds, s, wrong, out)
	}
	return v, out
}

// skewed reports whether a trusted ts (t) of a device whose clock is
// behind is about as far behind as the clock was found to be: not nearer
// the newest (lastAbs) or, when the newest is ahead of it, the receive
// time, than half the lag.
func (e *Engine) skewed(dev devices.Index, s *Stamp, t, lastAbs int64) bool {
	sk := int64(e.skews[dev])
	return sk >= minSkew && min(lastAbs, s.Recv)-t > sk/2
}

// minSkew is the least lag of a clock that went back for which its later
// ts are read on the receive clock: below it, reorderings in transit and
// jitter would look like the lagging clock.
const minSkew = 10_000

// recvTime is the time a message that stands at its receive time recv is
// evaluated at: on the device's receive clock (recv plus rskew), moved
// forward to the newest (lastAbs) if it is behind it.
func (e *Engine) recvTime(ds *devState, recv, lastAbs int64) int64 {
	t := recv + int64(ds.rskew)
	if t < lastAbs {
		ds.rskew = int32(min(int64(ds.rskew)+lastAbs-t, math.MaxInt32))
		t = lastAbs
	}
	return t
}

// era is what handBack did to a device's times: every time the engine held
// was moved back by shift; mark is the newest of them before the move, on
// the clock that was ahead.
type era struct {
	mark, shift int64
	// seq is the device's newest seq when the times moved (hasSeq: it
	// had one): a seq at or before it was sent on the clock that was
	// ahead, a newer one after.
	seq    uint32
	hasSeq bool
}

// eraLife is how long after its mark an era is kept: a replay older than
// that is older than baseLag anyway.
const eraLife = baseLag

// leadDropped reports whether s's ts is nearer the receive time than to
// the device's newest (lastAbs), which is at least minSkew ahead of the
// receive time: a clock that ran ahead and was set right, rather than a
// message reordered in transit.
func leadDropped(s *Stamp, lastAbs int64) bool {
	ahead := lastAbs - s.Recv
	return ahead >= minSkew && s.Time-s.Recv <= ahead/2
}

// handBack moves the device's times back when a new message's ts (s.Time)
// is behind the newest (*lastAbs) and the newest is ahead of the receive
// time: the device's clock ran ahead (within ingest.max_future, so its ts
// were believed; or a lagging clock stepped forward, read on the receive
// clock) and was set right, or less ahead. Everything the engine holds
// moves with it (durations keep counting, an event's newest report stays
// the newest), so that the message stands at its own ts, and the
// receive-clock lead (rskew) becomes the clock's lead now. The newest moves
// back to the message's ts, but not behind the receive time by more than
// minSkew (transit); a clock further behind is then judged as one that
// went back, against the receive time rather than the old lead. A move of
// minSkew or more is remembered (Engine.eras) so that a replay of what the
// clock sent while ahead is read back onto the moved times (fromEra). It
// reports whether it moved anything.
func (e *Engine) handBack(dev devices.Index, ds *devState, s *Stamp, lastAbs *int64) bool {
	lead := s.Time - s.Recv
	d := min(*lastAbs-s.Time, *lastAbs-s.Recv+min(max(-lead, 0), minSkew))
	if d <= 0 {
		return false
	}
	b := ds.baseMs() - d
	e.moveBase(ds, b, b)
	ds.rskew = int32(max(min(lead, math.MaxInt32), 0))
	*lastAbs -= d
	if d < minSkew && ds.flags&flagEra == 0 {
		// A small step (NTP trimming a clock a little ahead): a replay
		// from before it is misread by less than transit jitter, and
		// the device keeps the fast path.
		return true
	}
	if e.eras == nil {
		e.eras = make(map[devices.Index]era)
	}
	er := era{mark: *lastAbs + d, shift: d, seq: ds.seq, hasSeq: ds.flags&flagSeq != 0}
	if old, ok := e.eras[dev]; ok && ds.flags&flagEra != 0 {
		// An earlier move still in force: one era holds both, their
		// sum and the later mark. A replay from between the two is
		// then read back further than it should (judged older), never
		// less.
		er.shift += old.shift
		er.mark = max(er.mark, old.mark)
	}
	e.eras[dev] = er
	ds.flags |= flagEra
	return true
}

// fromEra returns the time of a trusted message on the device's moved
// times (handBack): a ts at or before the era's mark that is evidently old
// (a lead over the receive time nearer the old lead than the clock's lead
// now; with a seq at most 64 before the newest when the times moved, any
// lead beyond the clock's now by minSkew; never with a seq after it) was
// read on the clock that was ahead, and is moved back with the rest. A new
// message keeps its ts. It drops an era older than eraLife.
func (e *Engine) fromEra(dev devices.Index, ds *devState, s *Stamp, lastAbs int64) int64 {
	er, ok := e.eras[dev]
	if !ok || lastAbs-er.mark > eraLife {
		delete(e.eras, dev)
		ds.flags &^= flagEra
		return s.Time
	}
	if s.Time > er.mark {
		return s.Time
	}
	lead := s.Time - s.Recv - int64(ds.rskew) // beyond the clock's lead now
	old := lead > er.shift/2
	if s.HasSeq && er.hasSeq {
		if d := int32(s.Seq - er.seq); d > 0 && d < 1<<20 {
			old = false // sent after the move
		} else if d <= 0 && d > -64 {
			// Sent before the move, unless its ts reads as the clock
			// does now: a counter that restarted since.
			old = lead > min(er.shift/2, minSkew)
		}
	}
	if old {
		return s.Time - er.shift
	}
	return s.Time
}

// older reports whether a message whose time t is behind the device's
// newest (lastAbs) is an older message rather than a new one from a wrong
// clock.
func (e *Engine) older(ds *devState, s *Stamp, t, lastAbs int64) bool {
	if !s.HasSeq || ds.flags&flagSeq == 0 {
		// Without seq a replay and a clock step look alike: a gateway's
		// is a replay, a device's own one only if it is a little late
		// and its ts is not nearer the receive time than the clock's
		// lead (a clock that was ahead, set right).
		return s.Replay || lastAbs-t <= ReorderTolerance && !leadDropped(s, lastAbs)
	}
	d := int32(s.Seq - ds.seq)
	if s.Replay {
		return d <= 0 // a newer seq with an older ts: the gateway's clock went back
	}
	// A gap of the seq window, or a seq seen whose digest is no longer
	// held (a later seq took its slot): a QoS 1 resend of a message already
	// evaluated, arriving after four or more newer ones (a broker node
	// that stored it died before its PUBACK left). Taken for a restarted
	// counter, three such resends in a row raised a false clock fault
	// (时钟异常) and their old readings were evaluated as new. Except a seq
	// below counterStart: a counter that restarted within 64 messages of
	// its start (or of the first message heard), on a clock a little
	// behind (FuzzFieldModel, seed 454: taken as late, its smoke alarm was
	// hidden).
	return lastAbs-t <= ReorderTolerance && d < 0 && d > -64 && s.Seq >= counterStart &&
		(ds.window()&(uint64(1)<<uint(-d)) == 0 || digestForgotten(ds, d))
}

// counterStart: a device's counter starts again at 0 or 1 after a reboot.
// A seq below 4 (a counter's first messages, the first lost or reordered)
// behind the newest, other than a copy whose digest is held, is taken for
// such a start rather than for a resend or a reordered message. Nothing
// else tells them apart within the window (docs/rules.md, "Sequence
// numbers"): one of a counter's first three messages arriving after newer
// ones (reordered, or resent after four or more) is evaluated as new.
const counterStart = 4

// digestForgotten reports whether the digest of the seq d behind the
// device's newest (d < 0, within the window) has been overwritten by a
// later seq sharing its slot, so that a copy of it cannot be told from
// other content.
func digestForgotten(ds *devState, d int32) bool {
	w := ds.window()
	for k := -d - 4; k >= 0; k -= 4 {
		if w&(uint64(1)<<uint(k)) != 0 {
			return true
		}
	}
	return false
}

// window records s's seq in the device's sequence window.
func (e *Engine) window(ds *devState, s *Stamp, fresh bool) {
	d := int32(s.Seq - ds.seq)
	switch {
	case ds.flags&flagSeq == 0 || d >= 64 || (d <= -64 && fresh):
		ds.seq, ds.seen, ds.dig = s.Seq, [2]uint32{1, 0}, [4]uint32{}
		ds.flags |= flagSeq
	case d > 0:
		ds.seq = s.Seq
		ds.setWindow(ds.window()<<uint(d) | 1)
	case d > -64:
		bit := uint64(1) << uint(-d)
		if fresh && (ds.window()&bit != 0 || s.Seq < counterStart) {
			// A seq seen before with other content, or a counter's
			// start, and new: the device restarted its counter.
			ds.seq, ds.seen, ds.dig = s.Seq, [2]uint32{1, 0}, [4]uint32{}
		} else {
			ds.setWindow(ds.window() | bit)
			if digestForgotten(ds, d) {
				return // the slot is a later seq's: keep its digest
			}
		}
	default:
		return // an old message beyond the window
	}
	ds.dig[s.Seq&3] = s.Digest
}

// clock counts messages with a wrong clock and raises the device's clock
// fault after ClockFaultAfter in a row; a message with a right clock clears
// it.
func (e *Engine) clock(dev devices.Index, ds *devState, s *Stamp, wrong bool, out []Event) []Event {
	n := (ds.flags & clockMask) >> clockShift
	k := e.layouts[ds.layout].kind
	r := e.clockRules[k]
	if r == nil {
		return out
	}
	ev := Event{Rule: r, Device: dev, Since: s.Recv, Time: s.Recv, Seq: s.Seq}
	if !wrong {
		ds.flags &^= clockMask
		if ds.flags&flagClockFault != 0 {
			ds.flags &^= flagClockFault
			ev.Transition = Clear
			out = append(out, ev)
		}
		return out
	}
	if n < ClockFaultAfter {
		n++
		ds.flags = ds.flags&^clockMask | n<<clockShift
	}
	if n >= ClockFaultAfter && ds.flags&flagClockFault == 0 {
		ds.flags |= flagClockFault
		ev.Transition, ev.Value = Raise, 1
		out = append(out, ev)
	}
	return out
}

// rel is t relative to the device's base, plus one, clamped to a slot.
func (e *Engine) rel(ds *devState, t int64) uint32 {
	r := t - ds.baseMs() + 1
	if r < 1 {
		return 1
	}
	if r > int64(timeMask) {
		return timeMask
	}
	return uint32(r)
}

// moveBase makes the relative times the device holds count from nb
// (rounded down to the base's unit) instead of from (Unix ms): from the
// base to move it forward (the same times), from a time before the base to
// move every time back by the difference (handBack).
func (e *Engine) moveBase(ds *devState, from, nb int64) {
	nu := int32(nb >> baseShift)
	shift := int64(nu)<<baseShift - from
	ds.base = nu
	if shift == 0 {
		return
	}
	move := func(v uint32) uint32 {
		if v == 0 {
			return 0
		}
		return uint32(min(max(int64(v)-shift, 1), int64(timeMask)))
	}
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
	if len(pos) == 0 || adm == Duplicate || adm == Superseded {
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
		if (adm == Late || adm == Unordered) && c.op != OpEvent {
			continue
		}
		if adm == Unordered && (r.Value == 0 || e.states[ds.slot+pl.offset+uint32(ch)*uint32(c.width)]&firingBit != 0) {
			continue // it may raise, not clear or move the time
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
				Value: r.Value, Ref: ref, Since: ds.baseMs() + int64(since) - 1, Time: r.Time, Seq: r.Seq,
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
	if c.op == OpEvent {
		// An event rule's slot holds the device time of the newest report
		// of its event: a report older than that (a replay, a reordering)
		// cannot undo or repeat what a newer one decided.
		if last := *st & timeMask; last != 0 && rel < last {
			return 0, 0
		}
		active := v != 0 && v == v && on
		switch firing := *st&firingBit != 0; {
		case active && !firing:
			*st = firingBit | rel
			return Raise, rel
		case !active && firing:
			*st = rel
			return Clear, rel
		default:
			*st = *st&firingBit | rel
		}
		return 0, 0
	}
	if *st&firingBit != 0 {
		var stop bool
		switch c.op {
		case OpAbove:
			stop = v < c.clear
		case OpBelow:
			stop = v >= c.clear
		}
		// NaN compares false everywhere: it neither starts nor ends a
		// condition (the decoder rejects it anyway).
		if !stop && on {
			*st = firingBit // the end, if it was beginning, did not hold
			return 0, 0
		}
		since := *st & timeMask
		if since == 0 || since > rel {
			since = rel
			*st = firingBit | rel
		}
		if int64(rel)-int64(since) >= c.clearForMs || !on {
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

// rateTolerance is the relative tolerance of a rate rule's comparison: the
// reference is kept as a float32 (7 significant digits), so a change of
// exactly the threshold in the decimals a device sends (0.35 → 0.30) comes
// out a few parts in 10⁸ short or long. A change within one part per million
// of the values' size counts as the threshold.
const rateTolerance = 1e-6

// rate advances a rises/falls rule. s[1], s[2] hold the reference reading
// (time, float32 value): the extreme of the current window, from which the
// change is measured; s[3], s[4] the runner-up: the extreme of the readings
// after the reference, which becomes the reference when the old one leaves
// the window. Ties refresh both, so a plateau keeps its newest reading.
func (c *compiled) rate(s []uint32, r devices.Reading, rel uint32, zoneMs int64) (Transition, uint32, float64) {
	v := r.Value
	if v != v || math.IsInf(v, 0) {
		return 0, 0, 0
	}
	dir := 1.0
	if c.op == OpFalls {
		dir = -1
	}
	refT, refV := s[1], float64(math.Float32frombits(s[2]))
	candT, candV := s[3], float64(math.Float32frombits(s[4]))
	if refT != 0 && int64(rel)-int64(refT) > c.withinMs {
		refT = 0
		if candT != 0 && int64(rel)-int64(candT) <= c.withinMs {
			refT, refV = candT, candV
		}
		candT = 0
	}
	if refT == 0 {
		refT, refV = rel, v
	}
	change := dir * (v - refV)
	tol := rateTolerance * (math.Abs(v) + math.Abs(refV))
	if change <= tol {
		// At or beyond the extreme: the newest such reading is the reference.
		refT, refV, candT, change = rel, v, 0, 0
	} else if candT == 0 || dir*(v-candV) <= 0 {
		candT, candV = rel, v
	}
	s[1], s[2] = refT, math.Float32bits(float32(refV))
	s[3], s[4] = candT, math.Float32bits(float32(candV))
	on := c.inForce(r.Time, zoneMs)
	cond := change >= c.threshold-tol && on
	firing := s[0]&firingBit != 0
	switch {
	case cond && !firing:
		s[0] = firingBit | rel
		return Raise, refT, refV
	case firing && !on:
		// Outside its window the rule is not in force: it clears at once.
		since := s[0] & timeMask
		s[0] = 0
		return Clear, since, refV
	case firing && !cond && int64(rel)-int64(s[0]&timeMask) >= c.withinMs:
		// A whole window passed since the change without another.
		since := s[0] & timeMask
		s[0] = 0
		return Clear, since, refV
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
