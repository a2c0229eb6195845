package pipeline

import (
	"context"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Cluster mode (issue 15, package cluster): several instances share the
// devices, each handling the partitions it owns at the moment. An instance
// hears nothing from the devices of the other partitions, so its liveness
// must not raise (or clear) their offline alarms — the owner does.
// Options.Owns says which devices this instance handles now; ownedSink
// passes on liveness transitions of those only; Adopt re-arms the devices
// of a partition this instance begins to handle.

// ownedSink is a LivenessSink that drops the transitions of devices this
// instance does not handle now.
type ownedSink struct {
	next devices.LivenessSink
	owns func(devices.Index) bool
}

func (s ownedSink) Offline(d devices.Index, lastSeen, now int64) {
	if s.owns(d) {
		s.next.Offline(d, lastSeen, now)
	}
}

func (s ownedSink) Online(d devices.Index, lastSeen, now int64) {
	if s.owns(d) {
		s.next.Online(d, lastSeen, now)
	}
}

// Adopt is called when this instance begins to handle devs (a partition
// acquired), while Owns is still false for them and before their messages.
// Their rule state is forgotten (rules.Engine.Forget). What this instance
// knows of their liveness is stale (another instance
// heard them): each starts a fresh grace now, without an event, and those
// whose offline alarm is open in the alarm store are marked offline again,
// so that it clears when they speak and is not raised twice. A device that
// fell silent shortly before the takeover is thus raised up to one grace
// late, never early: the per-partition checkpoint that would carry the
// previous owner's last sightings is not built yet (docs/cluster.md).
func (p *Pipeline) Adopt(ctx context.Context, devs []devices.Index) error {
	if len(devs) == 0 {
		return nil
	}
	// What this instance's rule engine remembers of them dates from when it
	// last handled them (or from its start): forget it rather than let a
	// stale "firing" swallow a new alarm or a stale pending for raise one
	// early. Alarms the previous owner left open stay open in the store; a
	// new raise of one counts as its repeat, and it clears by hand or when
	// it is raised and cleared again (as after a restart without a
	// checkpoint).
	p.mu.Lock()
	p.eng.Forget(devs)
	p.mu.Unlock()
	now := p.clock.now()
	for _, d := range devs {
		p.live.Seen(d, now)
	}
	// The devices this instance had marked offline are back now: the
	// tick tells the sink, which drops it (not ours yet), rather than the
	// next regular tick after Owns turned true.
	p.live.Tick(now)
	mine := make(map[devices.Index]bool, len(devs))
	for _, d := range devs {
		mine[d] = true
	}
	return p.alarms.OpenAlarms(ctx, rules.SeverityOffline, func(o OpenAlarm) {
		if d, ok := p.ledger.LookupID(o.Device); ok && mine[d.Index] {
			p.live.MarkOffline(d.Index, o.Since.UnixMilli())
		}
	})
}
