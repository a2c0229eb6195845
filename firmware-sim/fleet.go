package sim

import (
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// DefaultStatusInterval is how often every device sends a status heartbeat
// unless Fleet.StatusInterval says otherwise.
const DefaultStatusInterval = 60 * time.Second

// Fleet is the simulated fleet of a ledger: one behaviour model per device.
// Next hands out messages round-robin across devices, giving devices in an
// incident an extra turn every second. The output is deterministic for a
// seed, a ledger and the sequence of calls with their clock values.
//
// A Fleet is not safe for concurrent use: one goroutine drives it.
type Fleet struct {
	// StatusInterval is how often each device sends a status heartbeat
	// (±10 %). Set it before the first call of Next.
	StatusInterval time.Duration

	ledger *devices.Ledger
	gen    gen
	devs   []device
	rr     int     // round-robin cursor
	hot    []int32 // indexes of devices in an incident
	hotCur int
}

type device struct {
	dev        *devices.Device
	topics     [numTopics]string
	m          model
	seq        uint32
	last       int64 // Unix ms of its previous message
	nextStatus int64
	started    bool
	hot        bool // in Fleet.hot
}

// NewFleet returns the simulated fleet of every device in l.
func NewFleet(l *devices.Ledger, seed int64) *Fleet {
	f := &Fleet{StatusInterval: DefaultStatusInterval, ledger: l, gen: newGen(seed)}
	f.devs = make([]device, len(l.Devices))
	for i := range l.Devices {
		d := &l.Devices[i]
		dv := &f.devs[i]
		dv.dev = d
		for t := range dv.topics {
			dv.topics[t] = "fw/v1/up/" + d.ID + "/" + topicNames[t]
		}
		switch d.Kind {
		case devices.KindElectrical:
			dv.m = newElectrical(&f.gen)
		case devices.KindSmoke:
			dv.m = newSmoke(&f.gen)
		case devices.KindHydrant:
			dv.m = newHydrant(&f.gen)
		case devices.KindCharger:
			dv.m = newCharger(&f.gen)
		default:
			panic("sim: device " + d.ID + " has no kind") // ParseLedger never returns one
		}
	}
	return f
}

// Len returns the number of devices.
func (f *Fleet) Len() int { return len(f.devs) }

// Next appends the next message of the fleet at time now to buf[:0] and
// returns its MQTT topic (fw/v1/up/{device}/{telemetry|event|status}) and
// payload. The payload aliases buf: copy it before the next call if it must
// outlive it. Next returns an empty topic for an empty fleet.
func (f *Fleet) Next(now time.Time, buf []byte) (topic string, payload []byte) {
	if len(f.devs) == 0 {
		return "", buf[:0]
	}
	ms := now.UnixMilli()
	d := f.pick(ms)
	interval := f.StatusInterval.Milliseconds()
	if interval <= 0 {
		interval = DefaultStatusInterval.Milliseconds()
	}
	if !d.started {
		// Spread the heartbeats so that they do not all fall in one second.
		d.started = true
		d.nextStatus = ms + f.gen.millis(0, interval)
	}
	statusDue := ms >= d.nextStatus
	d.seq++
	t, b := d.m.next(&f.gen, ms, d.seq, statusDue, buf[:0])
	if t == topicStatus {
		d.nextStatus = ms + f.gen.millis(interval*9/10, interval*11/10)
	}
	d.last = ms
	return d.topics[t], b
}

// pick chooses the device of the next turn: a device in an incident that
// wants its turn, else the next one round-robin.
func (f *Fleet) pick(ms int64) *device {
	for i := 0; i < len(f.hot); {
		k := (f.hotCur + i) % len(f.hot)
		d := &f.devs[f.hot[k]]
		want, keep := d.m.hot(ms, d.last)
		if !keep {
			d.hot = false
			f.hot = append(f.hot[:k], f.hot[k+1:]...)
			continue
		}
		if want {
			f.hotCur = k + 1
			return d
		}
		i++
	}
	d := &f.devs[f.rr]
	for range f.devs { // NB-IoT detectors report through their platform (nbiot.go), not MQTT
		f.rr++
		if f.rr == len(f.devs) {
			f.rr = 0
		}
		if d.dev.NBIoT == nil {
			break
		}
		d = &f.devs[f.rr]
	}
	return d
}

func (f *Fleet) markHot(i devices.Index) {
	d := &f.devs[i]
	if !d.hot {
		d.hot = true
		f.hot = append(f.hot, int32(i))
	}
}
