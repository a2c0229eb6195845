package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/rules"
)

// livenessAlarms turns liveness transitions into rule events of severity
// offline (离线), so that a silent device goes through the alarm path like
// any other alarm: stored, pushed to its station, cleared when it speaks.
// devices does not import rules; this adapter is the glue.
type livenessAlarms struct {
	// ledger is the registry snapshot in force (it changes live: registry.go).
	ledger atomic.Pointer[devices.Ledger]
	rules  [devices.NumKinds]*rules.Rule
	sink   Events
}

// offlineRuleID is the rule id of offline alarms of kind k, e.g.
// "smoke.offline".
func offlineRuleID(k devices.Kind) string { return k.String() + ".offline" }

func newLivenessAlarms(l *devices.Ledger, sink Events) *livenessAlarms {
	la := &livenessAlarms{sink: sink}
	la.ledger.Store(l)
	for k := devices.KindElectrical; k < devices.NumKinds; k++ {
		// The alarm path needs a metric of the kind: the heartbeat event
		// where the kind has one, else the signal strength, which every
		// kind reports.
		m, ok := devices.MetricByName(k, "heartbeat")
		if !ok {
			m, _ = devices.MetricByName(k, "rssi_dbm")
		}
		la.rules[k] = &rules.Rule{ID: offlineRuleID(k), Kind: k, Metric: m, Op: rules.OpEvent, Severity: rules.SeverityOffline}
	}
	return la
}

// Offline raises the offline alarm: Since is the last sighting, Time when
// the silence was noticed, so the push's held_s is how long it was silent.
func (la *livenessAlarms) Offline(d devices.Index, lastSeen, now int64) {
	la.submit(d, rules.Raise, lastSeen, now)
}

// Online clears it when the device speaks again.
func (la *livenessAlarms) Online(d devices.Index, lastSeen, now int64) {
	la.submit(d, rules.Clear, lastSeen, now)
}

func (la *livenessAlarms) submit(d devices.Index, t rules.Transition, since, now int64) {
	k := la.kindOf(d)
	if k == devices.KindInvalid {
		return
	}
	v := 1.0
	if t == rules.Clear {
		v = 0
	}
	la.sink.Submit(rules.Event{Rule: la.rules[k], Device: d, Transition: t, Value: v, Since: since, Time: now})
}

var _ devices.LivenessSink = (*livenessAlarms)(nil)

func (la *livenessAlarms) kindOf(d devices.Index) devices.Kind {
	l := la.ledger.Load()
	if l == nil || int(d) >= len(l.Devices) || l.Devices[d].Removed {
		return devices.KindInvalid // removed from the registry: no alarm
	}
	return l.Devices[d].Kind
}

// runLiveness ticks lv until ctx is done.
func runLiveness(ctx context.Context, lv *devices.Liveness, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			lv.Tick(now.UnixMilli())
		}
	}
}

// restoreOffline marks the devices whose offline alarm is still open in
// the store, so that the alarm clears when they speak after a restart.
func restoreOffline(ctx context.Context, a Alarms, l *devices.Ledger, lv *devices.Liveness) (int, error) {
	n := 0
	err := a.OpenAlarms(ctx, rules.SeverityOffline, func(o OpenAlarm) {
		if d, ok := l.LookupID(o.Device); ok {
			lv.MarkOffline(d.Index, o.Since.UnixMilli())
			n++
		}
	})
	if err != nil {
		return n, fmt.Errorf("restore offline devices: %w", err)
	}
	return n, nil
}

// newLiveness builds the liveness tracker from the liveness.* keys.
// restored, if any, is the liveness of the last run (checkpoint.go).
func newLiveness(cfg LivenessConfig, l *devices.Ledger, sink devices.LivenessSink, start int64, restored []devices.Restored) (*devices.Liveness, error) {
	lc := devices.LivenessConfig{Tick: cfg.Tick, Missed: cfg.Missed, Restored: restored}
	lc.Heartbeat[devices.KindElectrical] = cfg.Electrical
	lc.Heartbeat[devices.KindSmoke] = cfg.Smoke
	lc.Heartbeat[devices.KindHydrant] = cfg.Hydrant
	lc.Heartbeat[devices.KindCharger] = cfg.Charger
	lc.LostWithin = cfg.LostWithin // NB-IoT detectors (GB/T 45839): cmd/firewatch/nbiot.go
	return devices.NewLiveness(l, lc, sink, start)
}

// relayedAt is when a message that a gateway's batch or an operator
// platform's push brought says its device spoke (Unix ms), 0 for "nothing
// about now" (issue 14). A fresh message on the device's own topic is
// proof of life at its receive time, whatever its clock says; anything an
// intermediary brought may be late — a gateway replaying its spool, a
// platform retrying a push — and counts at its device time, so that a
// replay never marks a dead device alive:
//
//   - a fresh message at the rule engine's time for it (v.Time): its ts
//     where the clock is believed, read on the receive clock where the
//     engine found the clock behind, the receive time without a believable
//     ts (the intermediary forwards it now);
//   - on a platform's push, a ts older than ingest.max_age is a retry, not
//     a wrong clock: it counts at that ts;
//   - an older message (late, duplicate, a replay) says nothing that the
//     newer one did not.
func relayedAt(m *ingest.Message, v rules.Verdict, relayed bool, recv int64) int64 {
	if relayed && m.Clock == ingest.ClockStale {
		return min(m.DevTime, recv)
	}
	if v.Admission != rules.Fresh {
		return 0
	}
	return min(v.Time, recv)
}

// heartbeatAt is relayedAt for a message without values (a heartbeat),
// which the rule engine does not see: its ts where believed, or older
// than ingest.max_age (as above), else its receive time.
func heartbeatAt(m *ingest.Message, relayed bool, recv int64) int64 {
	switch m.Clock {
	case ingest.ClockDevice, ingest.ClockOld:
		return min(m.DevTime, recv)
	case ingest.ClockStale:
		if relayed {
			return min(m.DevTime, recv)
		}
	}
	return recv
}
