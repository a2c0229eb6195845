package devices

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Grace is the offline grace of device d under cfg: its heartbeat (the
// ledger entry's, else the kind's from cfg, else DefaultHeartbeat) times
// cfg.Missed, capped by cfg.LostWithin for an NB-IoT detector.
func (cfg LivenessConfig) Grace(d *Device) (time.Duration, error) {
	missed := cfg.Missed
	if missed == 0 {
		missed = DefaultMissed
	}
	hb := d.Heartbeat
	if hb == 0 && d.Kind < NumKinds {
		hb = cfg.Heartbeat[d.Kind]
		if hb == 0 {
			hb = DefaultHeartbeat[d.Kind]
		}
	}
	g := hb * time.Duration(missed)
	if d.NBIoT != nil && cfg.LostWithin > 0 {
		g = min(g, cfg.LostWithin)
	}
	if hb <= 0 || g > MaxGrace {
		return 0, fmt.Errorf("liveness: device %s: grace %v (heartbeat %v × %d) must be positive and at most %v", d.ID, g, hb, missed, MaxGrace)
	}
	return g, nil
}

// Adopt follows a live change of the registry (issue 18): l is the new
// snapshot, whose device indices extend the tracked ones (Ledger.Apply
// keeps them stable). Added devices are tracked from now, as if heard
// now (as at start: a new device is not offline before its grace has
// passed); edited ones take their new grace (kind, heartbeat or NB-IoT
// binding may have changed); removed ones leave the wheel for good: no
// offline alarm for a device no longer in the registry, and one offline
// now no longer counts.
//
// Adopt must not run concurrently with Seen, SeenAt or Vitals: the
// pipeline calls it between two messages. Tick and Status may run.
func (lv *Liveness) Adopt(l *Ledger, edited, removed []Index, now int64) error {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	var errs []error
	// A grace that cannot be (a heartbeat beyond MaxGrace) is reported and
	// capped: the device is tracked all the same.
	grace := func(d *Device) time.Duration {
		g, err := lv.cfg.Grace(d)
		if err != nil {
			errs = append(errs, err)
			return MaxGrace
		}
		return g
	}
	for _, d := range edited {
		if int(d) >= len(lv.grace) {
			continue // added too: below
		}
		g := grace(l.Device(d))
		lv.growMu.Lock()
		lv.grace[d] = uint32(g.Milliseconds())
		lv.growMu.Unlock()
	}
	if n := len(l.Devices); n > len(lv.words) {
		old := len(lv.words)
		lv.growMu.Lock()
		if n > cap(lv.words) || n > cap(lv.vital) || n > cap(lv.grace) {
			// Room for more: a registry grows one change after another,
			// and each copy holds the messages back.
			c := n + n/4 + 64
			words := make([]atomic.Uint64, n, c)
			vital := make([]vitals, n, c)
			for i := range old {
				words[i].Store(lv.words[i].Load())
				v, w := &lv.vital[i], &vital[i]
				w.battery.Store(v.battery.Load())
				w.batteryAvg.Store(v.batteryAvg.Load())
				w.rssi.Store(v.rssi.Load())
				w.rssiAvg.Store(v.rssiAvg.Load())
			}
			grace := make([]uint32, n, c)
			copy(grace, lv.grace)
			lv.words, lv.vital, lv.grace = words, vital, grace
		} else {
			lv.words, lv.vital, lv.grace = lv.words[:n], lv.vital[:n], lv.grace[:n]
		}
		for i := old; i < n; i++ {
			lv.grace[i] = uint32(grace(&l.Devices[i]).Milliseconds())
			lv.words[i].Store(uint64(now) & timeMask)
			v := &lv.vital[i]
			v.battery.Store(nan32)
			v.batteryAvg.Store(nan32)
			v.rssi.Store(nan32)
			v.rssiAvg.Store(nan32)
		}
		lv.next = append(lv.next, make([]uint32, n-old)...)
		lv.growMu.Unlock()
		for i := old; i < n; i++ {
			lv.insert(uint32(i), now+int64(lv.grace[i]))
		}
	}
	for _, d := range removed {
		if int(d) >= len(lv.words) {
			continue
		}
		if lv.gone == nil {
			lv.gone = map[uint32]bool{}
		}
		lv.gone[uint32(d)] = true
		// Out of the offline count; its wheel entry is dropped when its
		// slot comes up (check).
		w := &lv.words[d]
		for {
			old := w.Load()
			if old&offlineBit == 0 || w.CompareAndSwap(old, old&^offlineBit) {
				if old&offlineBit != 0 {
					lv.offline.Add(-1)
				}
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Tracked is how many device slots liveness tracks (Ledger.Len of the
// snapshot it follows).
func (lv *Liveness) Tracked() int {
	lv.growMu.RLock()
	defer lv.growMu.RUnlock()
	return len(lv.words)
}
