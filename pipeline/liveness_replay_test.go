package pipeline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Issue 14, item 7 (a): a reading that arrives late — a gateway replaying
// its spool, a platform retrying a push — counts at its device time, with
// max semantics, so that a replay never marks a dead device alive.

// replayRig is a pipeline with the service's timestamp policy, liveness
// with a 1 min heartbeat (offline after 2 min) for every kind, offline
// alarms into events, and a receive clock the test moves.
type replayRig struct {
	t      *testing.T
	p      *Pipeline
	events *fakeEvents
	live   *devices.Liveness
	now    int64
}

func newReplayRig(t *testing.T, sink func(*Pipeline, *fakeEvents) devices.LivenessSink) *replayRig {
	t.Helper()
	now := time.Now().UnixMilli() / 1000 * 1000
	p, _, events := clockPipeline(t, now)
	p.alarms = &fakeAlarms{}
	cfg := LivenessConfig{Tick: time.Second, Missed: 2, Electrical: time.Minute, Smoke: time.Minute, Hydrant: time.Minute, Charger: time.Minute}
	var s devices.LivenessSink = newLivenessAlarms(p.ledger, events)
	if sink != nil {
		s = sink(p, events)
	}
	live, err := newLiveness(cfg, p.ledger, s, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.live = live
	return &replayRig{t: t, p: p, events: events, live: live, now: now}
}

// advance moves the clock to now+d in steps of one second, ticking
// liveness, and calls each (if not nil) every 30 s of it.
func (r *replayRig) advance(d time.Duration, each func()) {
	end := r.now + d.Milliseconds()
	for r.now < end {
		r.now += 1000
		r.p.clock.ms.Store(r.now)
		if each != nil && r.now%30_000 == 0 {
			each()
		}
		r.live.Tick(r.now)
	}
}

func (r *replayRig) status(id string) devices.Status {
	d, ok := r.p.ledger.LookupID(id)
	if !ok {
		r.t.Fatalf("no device %s", id)
	}
	return r.live.Status(d.Index)
}

// of lists the offline and gateway events of device id as
// "rule:transition".
func (r *replayRig) of(id string) string {
	d, _ := r.p.ledger.LookupID(id)
	var s []string
	for _, ev := range r.events.evs {
		if ev.Device == d.Index && (ev.Rule.Severity == rules.SeverityOffline || strings.HasSuffix(ev.Rule.ID, ".gateway_offline")) {
			s = append(s, ev.Rule.ID+":"+ev.Transition.String())
		}
	}
	return strings.Join(s, " ")
}

// A gateway that lost its uplink replays, when it is back, what a device
// said before it died. The device stays offline: the replay moves its last
// sighting to its newest reading (never back), not to the receive time.
func TestReplayDoesNotReviveDeadDevice(t *testing.T) {
	r := newReplayRig(t, nil)
	t0 := r.now
	batch := func(ts int64, seq int) string {
		return fmt.Sprintf(`{"dev":"el-1","ts":%d,"seq":%d,"m":{"residual_current_ma":20}}`, ts, seq)
	}
	r.p.handle("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[`+batch(t0, 1)+`]}`))
	// The uplink is down; el-1 speaks four more times to the gateway's
	// spool, then dies at t0+60 s.
	r.advance(10*time.Minute, nil)
	if got := r.of("el-1"); got != "electrical.offline:raise" {
		t.Fatalf("el-1 events %q, want it offline", got)
	}
	// The uplink is back: the spool is replayed.
	var spool []string
	for i := 1; i <= 4; i++ {
		spool = append(spool, batch(t0+int64(i)*15_000, 1+i))
	}
	r.p.handle("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[`+strings.Join(spool, ",")+`]}`))
	r.advance(5*time.Second, nil)
	if got := r.of("el-1"); got != "electrical.offline:raise" {
		t.Fatalf("el-1 events %q: the replay of a dead device's spool revived it", got)
	}
	st := r.status("el-1")
	if st.Online || st.LastSeen != t0+60_000 {
		t.Fatalf("el-1 online %v, last seen %+d ms from t0; want offline, last seen at its newest reading (+60000)", st.Online, st.LastSeen-t0)
	}
	// An older reading does not move the last sighting back.
	r.p.handle("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[`+batch(t0+30_000, 3)+`]}`))
	if st := r.status("el-1"); st.LastSeen != t0+60_000 {
		t.Fatalf("last seen moved back to %+d ms", st.LastSeen-t0)
	}
	// A fresh reading is the device back.
	r.p.handle("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[`+batch(r.now, 6)+`]}`))
	r.advance(time.Second, nil)
	if got := r.of("el-1"); got != "electrical.offline:raise electrical.offline:clear" {
		t.Fatalf("el-1 events %q, want the offline alarm cleared by a fresh reading", got)
	}
}

// An operator platform (NB-IoT) retries a push it could not deliver: a
// report older than the device's grace, or older than ingest.max_age, does
// not revive the offline detector; a repeat of one already taken counts
// for nothing; a fresh push does.
func TestPlatformRetryDoesNotReviveDevice(t *testing.T) {
	r := newReplayRig(t, nil)
	t0 := r.now
	push := func(ts int64, seq int) {
		r.p.Take(Message{Origin: "nbiot", Relayed: true, Topic: "fw/v1/up/hy-1/telemetry",
			Payload: fmt.Appendf(nil, `{"ts":%d,"seq":%d,"m":{"pressure_mpa":0.3}}`, ts, seq)})
	}
	push(t0, 1)
	r.advance(10*time.Minute, nil)
	if got := r.of("hy-1"); got != "hydrant.offline:raise" {
		t.Fatalf("hy-1 events %q, want it offline", got)
	}
	push(t0+50_000, 2) // retried 9 min late
	push(t0, 1)        // a repeat of the first
	push(t0-8*24*3600_000, 3)
	r.p.Take(Message{Origin: "nbiot", Relayed: true, Topic: "fw/v1/up/hy-1/status", Payload: fmt.Appendf(nil, `{"ts":%d}`, t0+55_000)})
	r.advance(5*time.Second, nil)
	if got := r.of("hy-1"); got != "hydrant.offline:raise" {
		t.Fatalf("hy-1 events %q: a platform's retry of old reports revived it", got)
	}
	if st := r.status("hy-1"); st.Online || st.LastSeen != t0+55_000 {
		t.Fatalf("hy-1 online %v, last seen %+d ms from t0; want offline, last seen +55000", st.Online, st.LastSeen-t0)
	}
	push(r.now-2000, 4)
	r.advance(time.Second, nil)
	if got := r.of("hy-1"); got != "hydrant.offline:raise hydrant.offline:clear" {
		t.Fatalf("hy-1 events %q, want the offline alarm cleared by a fresh push", got)
	}
}

// A device's own fresh message is proof of life at its receive time, even
// with a clock far behind (believed, within ingest.max_age).
func TestOwnTopicCountsAtReceiveTime(t *testing.T) {
	r := newReplayRig(t, nil)
	r.p.handle("fw/v1/up/hy-1/telemetry", fmt.Appendf(nil, `{"ts":%d,"seq":1,"m":{"pressure_mpa":0.3}}`, r.now-3600_000))
	if st := r.status("hy-1"); st.LastSeen != r.now {
		t.Fatalf("last seen %+d ms from the receive time", st.LastSeen-r.now)
	}
}
