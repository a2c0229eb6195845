package devices

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultHeartbeat is the heartbeat interval of each kind when neither the
// configuration nor the ledger entry sets one (DOMAIN.md; docs/security.md):
//
//   - smoke: 24 h, the usual NB-IoT detector heartbeat (they sleep to save
//     the battery);
//   - hydrant: 1 h, pressure sensors report at least hourly;
//   - electrical, charger: 5 min, mains-powered, always connected.
//
// A device is offline (离线) once it has been silent for DefaultMissed
// heartbeats.
var DefaultHeartbeat = [NumKinds]time.Duration{
	KindElectrical: 5 * time.Minute,
	KindSmoke:      24 * time.Hour,
	KindHydrant:    time.Hour,
	KindCharger:    5 * time.Minute,
	// A UITD's points report only when their state changes; the UITD's own
	// device has its 巡检 period from the ledger (devices/uitd.go).
	KindFacility: 24 * time.Hour,
}

// DefaultMissed is how many heartbeats a device may miss before it is
// offline: "offline after 2 missed" (DOMAIN.md).
const DefaultMissed = 2

// MaxGrace bounds a device's grace (heartbeat × missed): the timing wheel
// has one slot per tick up to it.
const MaxGrace = 30 * 24 * time.Hour

// LivenessConfig configures liveness tracking.
type LivenessConfig struct {
	// Tick is the resolution of the timing wheel: an offline device is
	// raised at most one tick after its grace ends.
	Tick time.Duration
	// Heartbeat is the interval per kind; zero takes DefaultHeartbeat. A
	// ledger entry's heartbeat overrides it for one device.
	Heartbeat [NumKinds]time.Duration
	// Missed is how many heartbeats may be missed; zero takes DefaultMissed.
	Missed int
	// LostWithin caps the grace of NB-IoT detectors bound in the ledger
	// (Device.NBIoT): GB/T 45839 wants lost communication shown within
	// 24 h. Zero: no cap.
	LostWithin time.Duration
	// Restored is, per device index, when its silence began as the last run
	// knew it (ReadLivenessState): the last sighting, or the start of the
	// run that first missed it. Zero (or a nil slice) counts from start.
	Restored []Restored
}

// Restored is a device's liveness from before a restart.
type Restored struct {
	// Since is the last sighting (Unix ms), or when tracking began.
	Since int64
	// Seen says Since is a sighting.
	Seen bool
	// Offline says the device was offline (its offline alarm raised).
	Offline bool
}

// LivenessSink is told when a device goes offline and when it speaks again.
// Calls come from Tick, one at a time: an Online never overtakes the Offline
// it ends, and comes at the first tick after the device spoke.
type LivenessSink interface {
	// Offline says device d has been silent since lastSeen (Unix ms); now is
	// when it was noticed.
	Offline(d Index, lastSeen, now int64)
	// Online says device d, offline and last heard at lastSeen, spoke at now.
	Online(d Index, lastSeen, now int64)
}

// word packs a device's last-seen time (Unix ms, low 62 bits) with two
// flags, so that Seen and the wheel agree through one atomic word.
const (
	offlineBit = uint64(1) << 63
	seenBit    = uint64(1) << 62
	timeMask   = seenBit - 1
	noEntry    = math.MaxUint32
)

// Liveness knows when every device was last heard from and raises the ones
// that have been silent for longer than their grace. All devices share one
// hashed timing wheel with a slot per tick up to the longest grace; Seen
// does not touch the wheel (an atomic load and compare-and-swap), and the
// wheel reschedules an entry lazily when its slot comes up and the device
// turns out to have spoken meanwhile. A device therefore costs its state words (about 32
// bytes, with the vitals), not a goroutine or a timer.
//
// Seen and Vitals are called from the ingest pipeline's goroutine, Tick
// from one ticker goroutine; Status may be called from anywhere.
type Liveness struct {
	sink   LivenessSink
	tickMs int64

	words []atomic.Uint64 // last seen | flags, per device
	grace []uint32        // grace per device, in ms
	vital []vitals

	offline atomic.Int64 // devices offline now

	mu    sync.Mutex // serialises the sink and guards the wheel
	next  []uint32   // intrusive list of the entries of one slot
	slots []uint32   // list heads
	mask  int64
	cur   int64 // next tick number to process

	// back holds the offline devices that spoke, for Tick to tell the
	// sink: Seen never waits for the sink (the alarm manager), so a mass
	// offline cannot stall ingest.
	backMu      sync.Mutex
	back, spare []backEvent
	// early are the devices brought back by a reading older than the
	// moment it came (SeenAt): their deadline may come before the slot
	// their entry waits in, so Tick checks them until it does not.
	early []backEvent

	// Live registry changes (liveness_live.go): cfg computes the grace of
	// added and edited devices, growMu guards the per-device slices
	// against Status and WriteState while Adopt grows them, gone (under
	// mu) are the removed devices, dropped from the wheel.
	cfg    LivenessConfig
	growMu sync.RWMutex
	gone   map[uint32]bool
	// resumed are the devices given another instance's last sighting
	// (liveness_resume.go), by deadline; under mu.
	resumed resumedHeap
}

type backEvent struct {
	d             Index
	lastSeen, now int64
	recv          int64 // when the reading at now came (SeenAt)
}

// vitals are the last battery level and signal strength of a device and
// their slow moving averages, as float32 bits (NaN until reported).
type vitals struct {
	battery, batteryAvg, rssi, rssiAvg atomic.Uint32
}

// vitalOf says which vital a metric is: 1 battery_pct, 2 rssi_dbm.
var vitalOf []uint8

func init() {
	vitalOf = make([]uint8, len(Catalog))
	for i, m := range Catalog {
		switch m.Name {
		case "battery_pct":
			vitalOf[i] = 1
		case "rssi_dbm":
			vitalOf[i] = 2
		}
	}
}

var nan32 = math.Float32bits(float32(math.NaN()))

// NewLiveness tracks the devices of l. start (Unix ms) counts as every
// device's last sighting, so that a restart does not raise the whole fleet:
// a device is offline only after its grace has passed since start without a
// word from it.
func NewLiveness(l *Ledger, cfg LivenessConfig, sink LivenessSink, start int64) (*Liveness, error) {
	if cfg.Tick <= 0 {
		return nil, fmt.Errorf("liveness: tick %v must be positive", cfg.Tick)
	}
	if cfg.Missed == 0 {
		cfg.Missed = DefaultMissed
	}
	if cfg.Missed < 0 {
		return nil, fmt.Errorf("liveness: missed %d must be positive", cfg.Missed)
	}
	n := len(l.Devices)
	lv := &Liveness{
		sink:   sink,
		tickMs: cfg.Tick.Milliseconds(),
		words:  make([]atomic.Uint64, n),
		grace:  make([]uint32, n),
		vital:  make([]vitals, n),
		next:   make([]uint32, n),
		cfg:    cfg,
	}
	lv.cfg.Restored = nil
	if lv.tickMs <= 0 {
		return nil, fmt.Errorf("liveness: tick %v is shorter than a millisecond", cfg.Tick)
	}
	var maxGrace time.Duration
	for i := range l.Devices {
		d := &l.Devices[i]
		hb := d.Heartbeat
		if hb == 0 && d.Kind < NumKinds {
			hb = cfg.Heartbeat[d.Kind]
			if hb == 0 {
				hb = DefaultHeartbeat[d.Kind]
			}
		}
		g := hb * time.Duration(cfg.Missed)
		if d.NBIoT != nil && cfg.LostWithin > 0 { // GB/T 45839 (nbiot.go)
			g = min(g, cfg.LostWithin)
		}
		if hb <= 0 || g > MaxGrace {
			return nil, fmt.Errorf("liveness: device %s: grace %v (heartbeat %v × %d) must be positive and at most %v", d.ID, g, hb, cfg.Missed, MaxGrace)
		}
		maxGrace = max(maxGrace, g)
		lv.grace[i] = uint32(g.Milliseconds())
		lv.words[i].Store(uint64(start) & timeMask)
		if i < len(cfg.Restored) {
			if r := cfg.Restored[i]; r.Since > 0 && r.Since <= start {
				w := uint64(r.Since) & timeMask
				if r.Seen {
					w |= seenBit
				}
				if r.Offline {
					w |= offlineBit
					lv.offline.Add(1)
				}
				lv.words[i].Store(w)
			}
		}
		v := &lv.vital[i]
		v.battery.Store(nan32)
		v.batteryAvg.Store(nan32)
		v.rssi.Store(nan32)
		v.rssiAvg.Store(nan32)
	}
	slots := int64(1)
	for slots < maxGrace.Milliseconds()/lv.tickMs+2 {
		slots <<= 1
	}
	lv.slots = make([]uint32, slots)
	for i := range lv.slots {
		lv.slots[i] = noEntry
	}
	lv.mask = slots - 1
	lv.cur = start / lv.tickMs
	for i := range l.Devices {
		lv.insert(uint32(i), int64(lv.words[i].Load()&timeMask)+int64(lv.grace[i]))
	}
	return lv, nil
}

const livenessMagic = "FWLIVE01"

// WriteState writes when each device's silence began (its last sighting,
// or when tracking began) by device id, and now (Unix ms), with a CRC-32C at
// the end, for ReadLivenessState after a restart. It may run on any
// goroutine.
func (lv *Liveness) WriteState(w io.Writer, l *Ledger, now int64) error {
	lv.growMu.RLock()
	defer lv.growMu.RUnlock()
	return lv.writeState(bufio.NewWriterSize(w, 1<<16), l, now, nil, true)
}

// writeState writes devs (all: every device of l instead) in WriteState's
// format to bw, leaving out those not in l or lv.words, and flushes it;
// growMu is held.
func (lv *Liveness) writeState(bw *bufio.Writer, l *Ledger, now int64, devs []Index, all bool) error {
	count := len(l.Devices)
	if !all {
		count = len(devs)
	}
	dev := func(i int) (Index, bool) {
		if all {
			return Index(i), true
		}
		d := devs[i]
		return d, int(d) < len(l.Devices) && int(d) < len(lv.words)
	}
	n := count
	if !all {
		n = 0
		for i := range count {
			if _, ok := dev(i); ok {
				n++
			}
		}
	}
	crc := uint32(0)
	put := func(b []byte) {
		crc = crc32.Update(crc, castagnoli, b)
		bw.Write(b)
	}
	le := binary.LittleEndian
	b := le.AppendUint64([]byte(livenessMagic), uint64(now))
	b = le.AppendUint32(b, uint32(n))
	put(b)
	for i := range count {
		d, ok := dev(i)
		if !ok {
			continue
		}
		id := l.Devices[d].ID
		b = le.AppendUint16(b[:0], uint16(len(id)))
		b = append(b, id...)
		b = le.AppendUint64(b, lv.words[d].Load())
		put(b)
	}
	bw.Write(le.AppendUint32(b[:0], crc))
	return bw.Flush()
}

// ReadLivenessState reads what WriteState wrote, for the devices of l (by
// id: devices new to the ledger start from the start, those gone are
// dropped), as LivenessConfig.Restored for a run starting at start (Unix
// ms). The time firewatch was down, from the checkpoint to start, is not
// counted as silence: each device's silence moves forward by it, so that a
// restart after a long outage of firewatch does not raise the whole fleet,
// and a quick restart changes nothing.
func ReadLivenessState(r io.Reader, l *Ledger, start int64) ([]Restored, error) {
	out := make([]Restored, len(l.Devices))
	if err := readLivenessState(r, l, start, func(j int, rs Restored) { out[j] = rs }); err != nil {
		return nil, err
	}
	return out, nil
}

// readLivenessState reads what WriteState wrote and gives each device of l
// it holds to put, by its index in l.
func readLivenessState(r io.Reader, l *Ledger, start int64, put func(j int, rs Restored)) error {
	br := bufio.NewReaderSize(r, 1<<16)
	crc := uint32(0)
	var err error
	get := func(b []byte) []byte {
		if err != nil {
			return b
		}
		if _, err = io.ReadFull(br, b); err == nil {
			crc = crc32.Update(crc, castagnoli, b)
		}
		return b
	}
	le := binary.LittleEndian
	var buf [8]byte
	if string(get(make([]byte, len(livenessMagic)))) != livenessMagic && err == nil {
		return errors.New("restore liveness: not a liveness checkpoint")
	}
	saved := int64(le.Uint64(get(buf[:8])))
	down := max(start-saved, 0)
	n := le.Uint32(get(buf[:4]))
	for i := uint32(0); i < n && err == nil; i++ {
		id := get(make([]byte, le.Uint16(get(buf[:2]))))
		w := le.Uint64(get(buf[:8]))
		if err != nil {
			break
		}
		j := int(i) // the same ledger: the same order
		if j >= len(l.Devices) || l.Devices[j].ID != string(id) {
			d, ok := l.Lookup(id)
			if !ok {
				continue
			}
			j = int(d.Index)
		}
		put(j, Restored{Since: int64(w&timeMask) + down, Seen: w&seenBit != 0, Offline: w&offlineBit != 0})
	}
	sum := crc
	if got := le.Uint32(get(buf[:4])); err == nil && got != sum {
		err = errors.New("checksum mismatch")
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("restore liveness: %w", err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Seen records that device d was heard from at now (Unix ms, receive time).
// It is O(1) and does not allocate: an atomic load and compare-and-swap,
// and only for a device that was offline a note for the next Tick, which
// tells the sink. Last-seen never moves backwards.
func (lv *Liveness) Seen(d Index, now int64) { lv.SeenAt(d, now, now) }

// SeenAt records that device d spoke at at (Unix ms: a reading's trusted
// device time, capped at now), learnt at now: a gateway's replay of its
// spool, an operator platform's retry. Last-seen becomes the later of the
// two, never earlier (max semantics). An offline device is back only if at
// is within its grace of now: a replay of what it said before it went
// silent moves its last sighting but does not revive it (issue 14). Same
// cost as Seen: nothing but a compare for a reading not newer than the last.
func (lv *Liveness) SeenAt(d Index, at, now int64) {
	at = min(at, now)
	w := &lv.words[d]
	old := w.Load()
	for {
		last := int64(old & timeMask)
		if old&offlineBit == 0 {
			nw := uint64(at)&timeMask | seenBit
			if at < last || old == nw || w.CompareAndSwap(old, nw) {
				return
			}
		} else if at+int64(lv.grace[d]) <= now {
			// Too old to say the device is there now.
			if at <= last || w.CompareAndSwap(old, uint64(at)&timeMask|seenBit|offlineBit) {
				return
			}
		} else if w.CompareAndSwap(old, uint64(max(at, last))&timeMask|seenBit) {
			lv.offline.Add(-1)
			lv.backMu.Lock()
			lv.back = append(lv.back, backEvent{d, last, at, now})
			lv.backMu.Unlock()
			return
		}
		old = w.Load()
	}
}

// Vitals records the battery level and signal strength among a message's
// values. It is a few array reads per value and does not allocate.
func (lv *Liveness) Vitals(d Index, metrics []Metric, values []float64) {
	for i, m := range metrics {
		if int(m) >= len(vitalOf) {
			continue
		}
		v := &lv.vital[d]
		switch vitalOf[m] {
		case 1:
			observe(&v.battery, &v.batteryAvg, values[i])
		case 2:
			observe(&v.rssi, &v.rssiAvg, values[i])
		}
	}
}

// observe stores the last value and moves the average an eighth of the way
// towards it: a trend over roughly the last eight reports.
func observe(last, avg *atomic.Uint32, v float64) {
	last.Store(math.Float32bits(float32(v)))
	a := math.Float32frombits(avg.Load())
	if a != a { // NaN: first report
		a = float32(v)
	} else {
		a += (float32(v) - a) / 8
	}
	avg.Store(math.Float32bits(a))
}

// MarkOffline records that device d is already offline, last heard at
// lastSeen: at start, for the devices with an open offline alarm, so that
// the alarm is cleared when they speak.
//
// A device the checkpoint restored as offline is marked already; the alarm
// store, which a person may have changed since, has the last word on the
// time.
func (lv *Liveness) MarkOffline(d Index, lastSeen int64) {
	if lv.words[d].Swap(uint64(lastSeen)&timeMask|seenBit|offlineBit)&offlineBit == 0 {
		lv.offline.Add(1)
	}
}

// Tick tells the sink of the offline devices that spoke since the last
// tick, then raises every device whose grace ended by now (Unix ms), and
// returns how many it raised. Call it every tick from one goroutine; a late
// call catches up.
func (lv *Liveness) Tick(now int64) int {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.backMu.Lock()
	back := lv.back
	lv.back = lv.spare[:0]
	lv.backMu.Unlock()
	for _, b := range back {
		lv.sink.Online(b.d, b.lastSeen, b.now)
		if b.now < b.recv {
			lv.early = append(lv.early, b)
		}
	}
	lv.spare = back[:0]
	raised := lv.checkEarly(now) + lv.checkResumed(now) // liveness_resume.go
	target := now / lv.tickMs
	if target-lv.cur >= int64(len(lv.slots)) {
		lv.cur = target - int64(len(lv.slots)) + 1 // each slot once
	}
	for ; lv.cur <= target; lv.cur++ {
		s := lv.cur & lv.mask
		e := lv.slots[s]
		lv.slots[s] = noEntry
		for e != noEntry {
			nx := lv.next[e]
			raised += lv.check(e, now)
			e = nx
		}
	}
	return raised
}

// checkEarly raises the devices of lv.early whose grace ended by now, and
// forgets those whose wheel entry is no longer behind their deadline: they
// went offline, or spoke since they came back. lv.mu is held.
func (lv *Liveness) checkEarly(now int64) int {
	raised := 0
	keep := lv.early[:0]
	for _, b := range lv.early {
		if lv.gone[uint32(b.d)] {
			continue
		}
		w := lv.words[b.d].Load()
		last := int64(w & timeMask)
		switch {
		case w&offlineBit != 0 || last >= b.recv:
			// Offline again, or its deadline is at least its entry's.
		case last+int64(lv.grace[b.d]) > now:
			keep = append(keep, b)
		case lv.words[b.d].CompareAndSwap(w, w|offlineBit):
			lv.offline.Add(1)
			lv.sink.Offline(b.d, last, now)
			raised++
		default:
			keep = append(keep, b) // it spoke meanwhile: look again
		}
	}
	lv.early = keep
	return raised
}

// check looks at one entry whose slot came up: it raises the device if its
// grace has ended and reschedules it in any case.
func (lv *Liveness) check(e uint32, now int64) int {
	if lv.gone[e] {
		return 0 // removed from the registry: out of the wheel for good
	}
	g := int64(lv.grace[e])
	for {
		w := lv.words[e].Load()
		last := int64(w & timeMask)
		if w&offlineBit != 0 {
			lv.insert(e, now+g) // look again later; Seen brings it back
			return 0
		}
		if last+g > now {
			lv.insert(e, last+g)
			return 0
		}
		// The swap in Seen and this CAS decide, on one word, whether the
		// device spoke in time.
		if lv.words[e].CompareAndSwap(w, w|offlineBit) {
			lv.offline.Add(1)
			lv.sink.Offline(Index(e), last, now)
			lv.insert(e, now+g)
			return 1
		}
	}
}

// insert puts entry e into the slot of the first tick at or after deadline.
func (lv *Liveness) insert(e uint32, deadline int64) {
	t := (deadline + lv.tickMs - 1) / lv.tickMs
	if t <= lv.cur {
		t = lv.cur + 1
	}
	s := t & lv.mask
	lv.next[e] = lv.slots[s]
	lv.slots[s] = e
}

// Status is what liveness knows of one device.
type Status struct {
	// Online is false once the device has been silent for longer than
	// Grace.
	Online bool
	// LastSeen is when the device was last heard from (Unix ms), zero if
	// not since firewatch started.
	LastSeen int64
	Grace    time.Duration
	// Battery (battery_pct) and RSSI (rssi_dbm) are the last reported
	// values, and their averages over roughly the last eight reports; NaN
	// when not reported since start.
	Battery, BatteryAvg, RSSI, RSSIAvg float64
}

// Status returns what is known of device d.
func (lv *Liveness) Status(d Index) Status {
	lv.growMu.RLock()
	defer lv.growMu.RUnlock()
	if int(d) >= len(lv.words) {
		return Status{Online: true, Battery: math.NaN(), BatteryAvg: math.NaN(), RSSI: math.NaN(), RSSIAvg: math.NaN()}
	}
	w := lv.words[d].Load()
	st := Status{Online: w&offlineBit == 0, Grace: time.Duration(lv.grace[d]) * time.Millisecond}
	if w&seenBit != 0 {
		st.LastSeen = int64(w & timeMask)
	}
	v := &lv.vital[d]
	f := func(a *atomic.Uint32) float64 { return float64(math.Float32frombits(a.Load())) }
	st.Battery, st.BatteryAvg, st.RSSI, st.RSSIAvg = f(&v.battery), f(&v.batteryAvg), f(&v.rssi), f(&v.rssiAvg)
	return st
}

// Offline returns how many devices are offline now.
func (lv *Liveness) Offline() int { return int(lv.offline.Load()) }
