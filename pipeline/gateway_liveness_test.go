package pipeline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Issue 14, item 7 (b): a silent gateway raises one offline fault naming
// its devices, not one offline alarm per device; its devices' own offline
// alarms are held back while it is silent, and when it is back the fault
// clears and a device still silent goes offline on its own a grace later.
func TestSilentGatewayOneAlarm(t *testing.T) {
	var ef *edgeFaults
	r := newReplayRig(t, func(p *Pipeline, events *fakeEvents) devices.LivenessSink {
		ef = newEdgeFaults(p.ledger, events, newLivenessAlarms(p.ledger, events), discardLogger())
		ef.now = p.clock.now
		p.edge = ef
		return ef
	})
	ef.live = r.live
	reading := func(dev string, seq int) string {
		return fmt.Sprintf(`{"dev":%q,"ts":%d,"seq":%d,"m":{"rssi_dbm":-80}}`, dev, r.now, seq)
	}
	seq := 0
	batch := func(devs ...string) {
		seq++
		var rs []string
		for _, d := range devs {
			rs = append(rs, reading(d, seq))
		}
		r.p.handle("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[`+strings.Join(rs, ",")+`]}`))
	}
	status := func() {
		r.p.handle("fw/v1/up/gw/gw-1/status", fmt.Appendf(nil, `{"ts":%d,"online":true,"buses":[]}`, r.now))
	}
	// gw-1 serves el-1, sm-1 (heartbeat 24 h in the ledger), hy-1, ch-1.
	batch("el-1", "hy-1", "ch-1")
	r.events.evs = nil // the first word's clear of a previous run's fault
	r.advance(10*time.Minute, nil)
	var all []string
	for _, ev := range r.events.evs {
		all = append(all, ev.Rule.ID+":"+ev.Transition.String())
	}
	if got := strings.Join(all, " "); got != "electrical.gateway_offline:raise" {
		t.Fatalf("events %q, want one gateway fault, no offline alarm per device", got)
	}
	note := r.events.evs[0].Rule.NoteZH
	for _, want := range []string{"网关 gw-1", "4 台", "el-1", "ch-1", "离线"} {
		if !strings.Contains(note, want) {
			t.Errorf("gateway fault %q does not say %q", note, want)
		}
	}
	if n := r.live.Offline(); n != 3 {
		t.Errorf("%d devices offline in liveness, want 3 (el-1, hy-1, ch-1)", n)
	}

	// The gateway is back, with el-1 and hy-1; the charger stays silent.
	r.events.evs = nil
	batch("el-1", "hy-1")
	status()
	r.advance(5*time.Minute, func() { batch("el-1", "hy-1"); status() })
	all = all[:0]
	for _, ev := range r.events.evs {
		d := r.p.ledger.Device(ev.Device).ID
		all = append(all, d+"/"+ev.Rule.ID+":"+ev.Transition.String())
	}
	if got := strings.Join(all, " "); got != "el-1/electrical.gateway_offline:clear ch-1/charger.offline:raise" {
		t.Fatalf("events %q, want the gateway fault cleared, then ch-1 offline on its own", got)
	}
	if st := r.status("ch-1"); st.Online {
		t.Error("ch-1 online")
	}
	if st := r.status("el-1"); !st.Online {
		t.Error("el-1 offline")
	}
}

// A device behind a gateway that still speaks goes offline on its own,
// and so does one that spoke on its own topic while its gateway, not
// heard since start, is silent.
func TestGatewaySpeaksDeviceOffline(t *testing.T) {
	var ef *edgeFaults
	r := newReplayRig(t, func(p *Pipeline, events *fakeEvents) devices.LivenessSink {
		ef = newEdgeFaults(p.ledger, events, newLivenessAlarms(p.ledger, events), discardLogger())
		ef.now = p.clock.now
		p.edge = ef
		return ef
	})
	ef.live = r.live
	r.p.handle("fw/v1/up/el-1/telemetry", fmt.Appendf(nil, `{"ts":%d,"seq":1,"m":{"voltage_v":220}}`, r.now))
	r.advance(3*time.Minute, nil)
	if got := r.of("el-1"); got != "electrical.offline:raise" {
		t.Fatalf("el-1 events %q", got)
	}
	r.p.handle("fw/v1/up/el-1/telemetry", fmt.Appendf(nil, `{"ts":%d,"seq":2,"m":{"voltage_v":220}}`, r.now))
	status := func() {
		r.p.handle("fw/v1/up/gw/gw-1/status", fmt.Appendf(nil, `{"ts":%d,"online":true,"buses":[]}`, r.now))
	}
	status()
	r.events.evs = nil
	r.advance(3*time.Minute, status)
	if got := r.of("el-1"); got != "electrical.offline:clear electrical.offline:raise" {
		t.Fatalf("el-1 events %q, want it back, then its own offline alarm while its gateway speaks", got)
	}
}

// A dead bus keeps holding its devices when the whole gateway falls
// silent and comes back with the bus still down: one bus fault and one
// gateway fault, no offline alarm of the bus's device.
func TestSilentGatewayKeepsBusHold(t *testing.T) {
	var ef *edgeFaults
	r := newReplayRig(t, func(p *Pipeline, events *fakeEvents) devices.LivenessSink {
		ef = newEdgeFaults(p.ledger, events, newLivenessAlarms(p.ledger, events), discardLogger())
		ef.now = p.clock.now
		p.edge = ef
		return ef
	})
	ef.live = r.live
	status := func() {
		r.p.handle("fw/v1/up/gw/gw-1/status", fmt.Appendf(nil,
			`{"ts":%d,"online":true,"buses":[{"port":"/dev/ttyUSB0","ok":false,"error":"no device on the bus answers","devices":["el-1"]}]}`, r.now))
	}
	seq := 0
	batch := func() {
		seq++
		r.p.handle("fw/v1/up/gw/gw-1/batch", fmt.Appendf(nil, `{"readings":[{"dev":"hy-1","ts":%d,"seq":%d,"m":{"rssi_dbm":-80}},{"dev":"ch-1","ts":%d,"seq":%d,"m":{"rssi_dbm":-80}}]}`, r.now, seq, r.now, seq))
	}
	status()
	batch()
	r.advance(10*time.Minute, nil) // the gateway falls silent
	r.advance(5*time.Minute, func() { status(); batch() })
	var all []string
	for _, ev := range r.events.evs {
		all = append(all, ev.Rule.ID+":"+ev.Transition.String())
	}
	got := strings.Join(all, " ")
	// (The first clear is the first word's, of a previous run's fault.)
	want := "electrical.gateway_offline:clear electrical.bus_fault:raise electrical.gateway_offline:raise electrical.gateway_offline:clear"
	if got != want {
		t.Fatalf("events\n%s\nwant\n%s", got, want)
	}
}
