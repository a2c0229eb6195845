package sim

import (
	"math"
	"math/rand/v2"
)

// A model is the behaviour of one device: given the time and its sequence
// number it appends the device's next message. Models are driven by the
// Fleet, one message per turn.
type model interface {
	// next appends the next message at ms (Unix milliseconds) and returns
	// its topic. statusDue says the device's heartbeat is due; a model may
	// send something more urgent first.
	next(g *gen, ms int64, seq uint32, statusDue bool, b []byte) (topic, []byte)
	// hot reports, for a device in an incident, whether it wants a turn now
	// (last is the time of its previous message) and whether it still takes
	// part in the incident (keep=false drops it from the fleet's hot list).
	hot(ms, last int64) (want, keep bool)
}

// gen is the fleet's random source with the helpers the models use.
type gen struct{ r *rand.Rand }

func newGen(seed int64) gen {
	return gen{r: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))}
}

func (g *gen) uniform(lo, hi float64) float64 { return lo + (hi-lo)*g.r.Float64() }
func (g *gen) noise(sd float64) float64       { return sd * g.r.NormFloat64() }
func (g *gen) chance(p float64) bool          { return g.r.Float64() < p }
func (g *gen) millis(lo, hi int64) int64      { return lo + g.r.Int64N(hi-lo+1) }

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// lag moves cur towards target as a first-order thermal or hydraulic lag
// with time constant tau: temperatures follow load smoothly, so a normal
// fleet never trips a rate-of-rise rule.
func lag(cur, target float64, dt int64, tau float64) float64 {
	if dt <= 0 {
		return cur
	}
	return cur + (target-cur)*(1-math.Exp(-float64(dt)/tau))
}

// hourOfDay returns the hour (0–24) in China Standard Time (UTC+8, no DST).
func hourOfDay(ms int64) float64 {
	s := (ms/1000 + 8*3600) % 86400
	if s < 0 {
		s += 86400
	}
	return float64(s) / 3600
}

// bump is a daily bell curve around hour mu.
func bump(h, mu, sigma float64) float64 {
	d := math.Abs(h - mu)
	if d > 12 {
		d = 24 - d
	}
	return math.Exp(-d * d / (2 * sigma * sigma))
}

// dailyLoad is the electrical load of a village building as a fraction of
// its peak: low at night, a late-morning shoulder, the peak at 20:00.
func dailyLoad(ms int64) float64 {
	h := hourOfDay(ms)
	return 0.25 + 0.25*bump(h, 11, 2.5) + 0.6*bump(h, 20, 2)
}

// waterDemand is the municipal water demand (0–1) that lowers the network
// pressure in the morning and evening peaks.
func waterDemand(ms int64) float64 {
	h := hourOfDay(ms)
	return math.Min(1, bump(h, 7.5, 1.2)+bump(h, 19, 1.5))
}

// incident is the time course of a scenario on one device: a linear rise
// to the dangerous peak, a hold, and (unless held for ever) a linear fall
// back to normal.
type incident struct {
	start, rise, hold, fall int64 // Unix ms; durations in ms; hold 0 = for ever
}

// level returns how far the incident drives the device from its normal
// value towards the peak, 0…1.
func (in *incident) level(ms int64) float64 {
	t := ms - in.start
	switch {
	case t <= 0:
		return 0
	case t < in.rise:
		return float64(t) / float64(in.rise)
	case in.hold == 0 || t < in.rise+in.hold:
		return 1
	case t < in.rise+in.hold+in.fall:
		return 1 - float64(t-in.rise-in.hold)/float64(in.fall)
	}
	return 0
}

func (in *incident) rising(ms int64) bool { return ms-in.start < in.rise }

// over reports whether the device is back to normal.
func (in *incident) over(ms int64) bool {
	return in.hold > 0 && ms-in.start >= in.rise+in.hold+in.fall
}

// hotEvery is how often a device in an incident reports: real monitors
// report at once and then densely while a threshold is exceeded, and the
// rules' `for` durations need a dense series whatever the fleet's rate.
const hotEvery = 1000 // ms

func hotTurn(in *incident, ms, last int64) (want, keep bool) {
	if in == nil || in.over(ms) {
		return false, false
	}
	return ms-last >= hotEvery, true
}

// rssi is a slowly wandering signal strength.
type rssi float64

func (r *rssi) read(g *gen, lo, hi float64) float64 {
	*r = rssi(clamp(float64(*r)+g.noise(0.7), lo, hi))
	return math.Round(float64(*r))
}

// --- electrical-fire monitor (电气火灾监控探测器) ---

// cableChannels is the number of cable temperature sensors modelled: L1, L2,
// L3 and N, the usual four-channel detector.
const cableChannels = 4

type electrical struct {
	residual float64 // baseline residual current, mA
	rated    float64 // rated phase current, A
	scale    float64 // how heavily the building is loaded
	share    [3]float64
	offset   [cableChannels]float64
	temp     [cableChannels]float64 // lagged cable temperatures, °C
	tempAt   int64
	step     uint8
	signal   rssi
	fire     *incident
	peak     [cableChannels]float64
}

func newElectrical(g *gen) *electrical {
	e := &electrical{
		residual: g.uniform(25, 110),
		rated:    []float64{32, 40, 63}[g.r.IntN(3)],
		scale:    g.uniform(0.7, 1.1),
		signal:   rssi(g.uniform(-95, -60)),
	}
	for i := range e.share {
		e.share[i] = g.uniform(0.8, 1)
	}
	for i := range e.offset {
		e.offset[i] = g.uniform(0, 3)
	}
	e.offset[3] -= 2 // the neutral runs cooler
	return e
}

func (e *electrical) cableTarget(ms int64, ch int) float64 {
	return 24 + 15*dailyLoad(ms)*e.scale + e.offset[ch]
}

func (e *electrical) next(g *gen, ms int64, seq uint32, statusDue bool, b []byte) (topic, []byte) {
	if e.tempAt == 0 {
		for c := range e.temp {
			e.temp[c] = e.cableTarget(ms, c)
		}
	} else {
		for c := range e.temp {
			e.temp[c] = lag(e.temp[c], e.cableTarget(ms, c), ms-e.tempAt, 5*60e3)
		}
	}
	e.tempAt = ms
	if e.fire != nil && e.fire.over(ms) {
		e.fire = nil
	}
	if statusDue {
		b = appendHead(b, ms, seq, 0)
		b = appendMetric(b, true, "rssi_dbm", e.signal.read(g, -110, -50), 0)
		return topicStatus, closeMetrics(b)
	}
	load := dailyLoad(ms) * e.scale
	step := e.step
	e.step = (e.step + 1) % (cableChannels + 1)
	if step == 0 {
		b = appendHead(b, ms, seq, 0)
		b = appendMetric(b, true, "residual_current_ma", clamp(e.residual+12*load+g.noise(3), 20, 150), 1)
		b = appendMetric(b, false, "voltage_v", clamp(221-3*load+g.noise(1), 215, 225), 1)
		return topicTelemetry, closeMetrics(b)
	}
	c := int(step) - 1
	t := clamp(e.temp[c]+g.noise(0.2), 20, 45)
	if e.fire != nil {
		t = t + (e.peak[c]-t)*e.fire.level(ms) + g.noise(0.4)
	}
	b = appendHead(b, ms, seq, c+1)
	b = appendMetric(b, true, "cable_temp_c", t, 1)
	if c < 3 { // channels 1–3 sit on phases L1–L3
		i := clamp(e.rated*0.9*load*e.share[c]+g.noise(0.3), 0, 0.92*e.rated)
		b = appendMetric(b, false, "phase_current_a", i, 2)
	}
	return topicTelemetry, closeMetrics(b)
}

func (e *electrical) hot(ms, last int64) (bool, bool) { return hotTurn(e.fire, ms, last) }

// --- smoke detector (独立式感烟火灾探测报警器, NB-IoT) ---

type smokeAlarm uint8

const (
	alarmNone smokeAlarm = iota
	alarmPending
	alarmOn
)

type smoke struct {
	battery  float64 // %
	signal   rssi
	selfTest bool // a self-test is open: the next turn ends it
	alarm    smokeAlarm
	alarmAt  int64 // when the smoke reaches the detector
	offAt    int64 // when it clears; 0 = never
}

func newSmoke(g *gen) *smoke {
	return &smoke{battery: g.uniform(45, 100), signal: rssi(g.uniform(-110, -75))}
}

// selfTestChance is the chance per turn that someone presses the test
// button: rare, but a duty officer sees it now and then.
const selfTestChance = 0.001

func (s *smoke) next(g *gen, ms int64, seq uint32, statusDue bool, b []byte) (topic, []byte) {
	switch {
	case s.alarm == alarmPending && ms >= s.alarmAt:
		s.alarm = alarmOn
		return topicEvent, appendEvent(appendHead(b, ms, seq, 0), "smoke_alarm", true)
	case s.alarm == alarmOn && s.offAt > 0 && ms >= s.offAt:
		s.alarm = alarmNone
		return topicEvent, appendEvent(appendHead(b, ms, seq, 0), "smoke_alarm", false)
	case s.selfTest:
		s.selfTest = false
		return topicEvent, appendEvent(appendHead(b, ms, seq, 0), "self_test", false)
	case s.alarm == alarmNone && g.chance(selfTestChance):
		s.selfTest = true
		return topicEvent, appendEvent(appendHead(b, ms, seq, 0), "self_test", true)
	}
	// Everything else a detector says is its heartbeat.
	s.battery = math.Max(20, s.battery-0.0005)
	b = appendHead(b, ms, seq, 0)
	b = appendMetric(b, true, "battery_pct", math.Round(s.battery), 0)
	b = appendMetric(b, false, "rssi_dbm", s.signal.read(g, -120, -65), 0)
	return topicStatus, closeMetrics(b)
}

func (s *smoke) hot(ms, last int64) (want, keep bool) {
	switch s.alarm {
	case alarmPending:
		return ms >= s.alarmAt, true
	case alarmOn:
		if s.offAt > 0 {
			return ms >= s.offAt, true
		}
	}
	return false, false
}

// --- hydrant pressure sensor (消火栓水压) ---

type hydrant struct {
	base    float64 // static network pressure, MPa
	battery float64
	signal  rssi
	loss    *incident
}

func newHydrant(g *gen) *hydrant {
	return &hydrant{base: g.uniform(0.28, 0.40), battery: g.uniform(50, 100), signal: rssi(g.uniform(-105, -70))}
}

// lossPeak is the pressure a broken or opened hydrant settles at, MPa.
const lossPeak = 0.05

func (h *hydrant) normal(g *gen, ms int64) float64 {
	return clamp(h.base*(1-0.08*waterDemand(ms))+g.noise(0.004), 0.25, 0.40)
}

func (h *hydrant) next(g *gen, ms int64, seq uint32, statusDue bool, b []byte) (topic, []byte) {
	if h.loss != nil && h.loss.over(ms) {
		h.loss = nil
	}
	if statusDue {
		h.battery = math.Max(20, h.battery-0.0005)
		b = appendHead(b, ms, seq, 0)
		b = appendMetric(b, true, "battery_pct", math.Round(h.battery), 0)
		b = appendMetric(b, false, "rssi_dbm", h.signal.read(g, -115, -60), 0)
		return topicStatus, closeMetrics(b)
	}
	p := h.normal(g, ms)
	if h.loss != nil {
		p = clamp(p+(lossPeak-p)*h.loss.level(ms)+g.noise(0.002), 0.02, 0.40)
	}
	b = appendHead(b, ms, seq, 0)
	b = appendMetric(b, true, "pressure_mpa", p, 3)
	return topicTelemetry, closeMetrics(b)
}

func (h *hydrant) hot(ms, last int64) (bool, bool) { return hotTurn(h.loss, ms, last) }

// --- e-bike charging cabinet (电动自行车充电柜) ---

// chargerSlots is the number of charging slots of a modelled cabinet.
const chargerSlots = 10

// Overheat scenario: the slot ramps from overheatFrom to overheatPeak °C.
const (
	overheatFrom = 40.0
	overheatPeak = 80.0
)

type slot struct {
	charging bool
	until    int64   // when the slot changes between charging and idle
	current  float64 // charging current of this session, A
	temp     float64 // lagged slot temperature, °C
	tempAt   int64
}

type charger struct {
	slots   [chargerSlots]slot
	cursor  uint8 // next slot of the round
	signal  rssi
	heat    *incident
	hotSlot uint8 // 0-based slot of the overheat incident
	alt     bool  // in an incident, every other turn reports the hot slot
}

func newCharger(g *gen) *charger { return &charger{signal: rssi(g.uniform(-95, -60))} }

// advance moves slot s to time ms: sessions start and end (more bikes charge
// overnight) and the temperature follows the current.
func (c *charger) advance(g *gen, s *slot, ms int64) {
	if s.until == 0 {
		s.charging = g.chance(0.55)
		s.current = g.uniform(1.2, 3)
		s.until = ms + g.millis(0, 4*3600e3)
		s.temp, s.tempAt = c.target(s), ms
	}
	for ms >= s.until {
		s.charging = !s.charging
		if s.charging {
			s.current = g.uniform(1.2, 3)
			s.until += g.millis(1.5*3600e3, 6*3600e3)
		} else {
			h := hourOfDay(s.until)
			idle := g.millis(20*60e3, 4*3600e3)
			if h >= 18 || h < 6 {
				idle /= 3
			}
			s.until += idle
		}
	}
	s.temp = lag(s.temp, c.target(s), ms-s.tempAt, 8*60e3)
	s.tempAt = ms
}

func (c *charger) target(s *slot) float64 {
	if s.charging {
		return 26 + 6*s.current
	}
	return 24
}

func (c *charger) next(g *gen, ms int64, seq uint32, statusDue bool, b []byte) (topic, []byte) {
	if c.heat != nil && c.heat.over(ms) {
		c.heat = nil
	}
	if statusDue {
		b = appendHead(b, ms, seq, 0)
		b = appendMetric(b, true, "rssi_dbm", c.signal.read(g, -110, -50), 0)
		return topicStatus, closeMetrics(b)
	}
	var n int
	if c.heat != nil && c.alt {
		n = int(c.hotSlot)
	} else {
		n = int(c.cursor)
		c.cursor = (c.cursor + 1) % chargerSlots
	}
	if c.heat != nil {
		c.alt = !c.alt
	}
	s := &c.slots[n]
	c.advance(g, s, ms)
	var t, i, p float64
	if s.charging {
		t = clamp(s.temp+g.noise(0.2), 22, 45)
		i = clamp(s.current*(1+g.noise(0.02)), 0.5, 3.5)
		p = i * 220 * 0.96
	} else {
		t = clamp(s.temp+g.noise(0.2), 18, 45)
	}
	if c.heat != nil && n == int(c.hotSlot) {
		base := t
		if c.heat.rising(ms) {
			base = math.Max(t, overheatFrom)
		}
		t = base + (overheatPeak-base)*c.heat.level(ms) + g.noise(0.3)
	}
	b = appendHead(b, ms, seq, n+1)
	b = appendMetric(b, true, "slot_temp_c", t, 1)
	b = appendMetric(b, false, "slot_current_a", i, 2)
	b = appendMetric(b, false, "slot_power_w", math.Round(p), 0)
	return topicTelemetry, closeMetrics(b)
}

func (c *charger) hot(ms, last int64) (bool, bool) { return hotTurn(c.heat, ms, last) }
