package bridge

import (
	"math"
	"sync/atomic"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// The last signal strength and battery percentage of each NB-IoT
// detector, for the status_info reports to a 中心级 platform
// (gb45839.Forwarder, docs/nbiot.md "Forwarding"). One word per bound
// device, updated lock-free before the report enters the pipeline, so the
// alarm it raises is reported with the values it came with. Made before
// the bridge (NewVitals) when the alarm manager needs it first.
type Vitals struct {
	slot map[string]int // device id → index in words (bound devices only; read-only)
	word []atomic.Uint64
}

const (
	vitalSignal  = 1 << 63 // bits 0…31: signal (int32)
	vitalBattery = 1 << 62 // bits 32…39: battery % (0…100)
)

// NewVitals makes the table of the ledger's NB-IoT detectors.
func NewVitals(l *devices.Ledger) *Vitals {
	v := &Vitals{slot: map[string]int{}}
	for i := range l.Devices {
		if l.Devices[i].NBIoT != nil {
			v.slot[l.Devices[i].ID] = len(v.slot)
		}
	}
	v.word = make([]atomic.Uint64, len(v.slot))
	return v
}

// note keeps what report r says of device d's signal and battery.
func (v *Vitals) note(d *devices.Device, r *nbiot.Report) {
	i, ok := v.slot[d.ID]
	if !ok {
		return
	}
	var set, val uint64
	if r.SignalSet {
		set |= vitalSignal
		val |= uint64(uint32(int32(r.Signal)))
	}
	for _, x := range r.Values {
		switch x.Metric.Info().Name {
		case "battery_pct":
			if x.Value >= 0 && x.Value <= 100 {
				set |= vitalBattery
				val = val&^(0xff<<32) | uint64(math.Round(x.Value))<<32
			}
		case "rssi_dbm":
			if !r.SignalSet {
				set |= vitalSignal
				val = val&^0xffffffff | uint64(uint32(int32(math.Round(x.Value))))
			}
		}
	}
	if set == 0 {
		return
	}
	var keep uint64 // the bits this report does not set
	if set&vitalSignal == 0 {
		keep |= vitalSignal | 0xffffffff
	}
	if set&vitalBattery == 0 {
		keep |= vitalBattery | 0xff<<32
	}
	for {
		old := v.word[i].Load()
		if v.word[i].CompareAndSwap(old, old&keep|set|val) {
			return
		}
	}
}

// Get is a gb45839.Vitals: the last signal and battery device reported.
func (v *Vitals) Get(device string) (signal int, signalOK bool, battery int, batteryOK bool) {
	i, ok := v.slot[device]
	if !ok {
		return 0, false, 0, false
	}
	w := v.word[i].Load()
	return int(int32(uint32(w))), w&vitalSignal != 0, int(w >> 32 & 0xff), w&vitalBattery != 0
}
