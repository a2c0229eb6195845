package pipeline

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Cluster mode: an instance raises no offline alarm for a device another
// instance handles (it hears nothing from it), and once it takes the
// device over (Adopt, then Owns) the device gets a fresh grace from the
// takeover and goes offline once, a grace later, if it stays silent.
func TestOwnershipLiveness(t *testing.T) {
	var owned atomic.Bool
	r := newReplayRig(t, func(p *Pipeline, events *fakeEvents) devices.LivenessSink {
		return ownedSink{next: newLivenessAlarms(p.ledger, events), owns: func(devices.Index) bool { return owned.Load() }}
	})
	r.advance(10*time.Minute, nil)
	if len(r.events.evs) != 0 || r.live.Offline() == 0 {
		t.Fatalf("another instance's devices: events %v (want none), %d offline in liveness (want all, silently)", r.events.evs, r.live.Offline())
	}
	var all []devices.Index
	for i := range r.p.ledger.Devices {
		all = append(all, devices.Index(i))
	}
	if err := r.p.Adopt(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	owned.Store(true)
	if len(r.events.evs) != 0 || r.live.Offline() != 0 {
		t.Fatalf("after Adopt: events %v (want none: no clear of what was never raised), %d offline (want 0)", r.events.evs, r.live.Offline())
	}
	r.advance(30*time.Second, nil)
	if len(r.events.evs) != 0 {
		t.Fatalf("offline within the grace that started at the takeover: %v", r.events.evs)
	}
	r.advance(5*time.Minute, nil)
	if got := r.of("el-1"); got != "electrical.offline:raise" {
		t.Errorf("el-1: %q, want one offline alarm a grace after the takeover", got)
	}
}

// Adopt forgets the rule state of the devices taken over: a smoke alarm
// this instance saw firing when it last handled the device is raised again
// when the device reports smoke after the takeover (without Adopt it would
// be swallowed as already firing).
func TestAdoptForgetsRuleState(t *testing.T) {
	r := newReplayRig(t, nil)
	p, events := r.p, r.events
	smoke := func() {
		p.handle("fw/v1/up/sm-1/event", fmt.Appendf(nil, `{"ts":%d,"event":"smoke_alarm"}`, p.clock.now()))
	}
	smoke()
	if got := transitions(events.evs); got != "smoke.smoke_alarm:raise" {
		t.Fatalf("first smoke: %q", got)
	}
	d, _ := p.ledger.LookupID("sm-1")
	if err := p.Adopt(context.Background(), []devices.Index{d.Index}); err != nil {
		t.Fatal(err)
	}
	events.evs = nil
	smoke()
	if got := transitions(events.evs); got != "smoke.smoke_alarm:raise" {
		t.Errorf("smoke after the takeover: %q, want the alarm raised (again)", got)
	}
}
