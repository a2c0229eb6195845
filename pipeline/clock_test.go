package pipeline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/rules"
)

// Tests of issue 22 (defects 1–5) and issue 21 (#10, #11) through the
// pipeline, as a device's or a gateway's messages reach it. Each failed on
// the code before the fix.

// clockPipeline is a test pipeline with the service's timestamp policy and
// a receive clock the test sets.
func clockPipeline(t *testing.T, now int64) (*Pipeline, *fakeLines, *fakeEvents) {
	t.Helper()
	p, lines, events, _ := newTestPipeline(t)
	p.dec.MaxFuture, p.dec.MaxAge, p.dec.MinTime = ingest.DefaultMaxFuture, ingest.DefaultMaxAge, ingest.DefaultMinTime
	p.clock.ms.Store(now)
	return p, lines, events
}

// transitions lists the events as "rule:raise" …, clock faults included.
func transitions(evs []rules.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Rule.ID+":"+ev.Transition.String())
	}
	return strings.Join(s, " ")
}

const t0 = int64(1_795_420_800_000) // 2026-11-24 08:00 UTC

// Defect 1: "tilt ended at 10:00:30" arriving after "tilt at 10:00:40" must
// not clear the alarm the newer message raised.
func TestLateEndDoesNotClear(t *testing.T) {
	for _, topic := range []string{"fw/v1/up/hy-1/event", "fw/v1/up/gw/gw-1/batch"} {
		t.Run(topic, func(t *testing.T) {
			p, _, events := clockPipeline(t, t0+41_000)
			send := func(ts int64, seq int, active bool) {
				msg := fmt.Sprintf(`{"ts":%d,"seq":%d,"event":"tilt","active":%v}`, ts, seq, active)
				if strings.Contains(topic, "/gw/") {
					msg = `{"readings":[` + strings.Replace(msg, "{", `{"dev":"hy-1",`, 1) + `]}`
				}
				p.handle(topic, []byte(msg))
			}
			send(t0+40_000, 6, true)  // tilted at 10:00:40
			send(t0+30_000, 5, false) // the end of an earlier tilt, delayed
			if got := transitions(events.evs); got != "hydrant.tilt:raise" {
				t.Fatalf("events %q: the late end cleared a tilt still in progress", got)
			}
			send(t0+50_000, 7, false)
			if got := transitions(events.evs); got != "hydrant.tilt:raise hydrant.tilt:clear" {
				t.Fatalf("events %q", got)
			}
		})
	}
}

// Defect 2: a gateway replaying its spool must not raise again a fire alarm
// that ended, however many messages came in between.
func TestReplayDoesNotReraise(t *testing.T) {
	p, lines, events := clockPipeline(t, t0+200_000)
	batch := func(ts int64, seq int, body string) string {
		return fmt.Sprintf(`{"readings":[{"dev":"sm-1","ts":%d,"seq":%d,%s}]}`, ts, seq, body)
	}
	var sent []string
	send := func(s string) {
		sent = append(sent, s)
		p.handle("fw/v1/up/gw/gw-1/batch", []byte(s))
	}
	send(batch(t0+1000, 10, `"event":"smoke_alarm"`))
	send(batch(t0+2000, 11, `"event":"smoke_alarm","active":false`))
	for i := range 100 {
		send(batch(t0+3000+int64(i)*1000, 12+i, `"m":{"battery_pct":90}`))
	}
	n := len(lines.b)
	for _, s := range sent[:5] { // the spool replayed from its start
		p.handle("fw/v1/up/gw/gw-1/batch", []byte(s))
	}
	if got := transitions(events.evs); got != "smoke.smoke_alarm:raise smoke.smoke_alarm:clear" {
		t.Fatalf("events %q: a replay raised the ended fire alarm again", got)
	}
	if len(lines.b) == n {
		t.Log("replays beyond the duplicate memory are stored again (InfluxDB overwrites the identical points)")
	}
}

// Defect 3: a detector that restarted its counter after a reboot, with its
// clock behind the newest time seen, reports smoke: evaluated, not dropped
// as a duplicate.
func TestRebootedDetectorSmoke(t *testing.T) {
	p, lines, events := clockPipeline(t, t0+3_600_000)
	for i := 1; i <= 20; i++ {
		p.handle("fw/v1/up/sm-1/status", fmt.Appendf(nil, `{"ts":%d,"seq":%d,"m":{"battery_pct":90}}`, t0+int64(i)*60_000, i))
	}
	// Rebooted: seq starts again at 1, the clock an hour behind.
	lines.b = lines.b[:0]
	p.handle("fw/v1/up/sm-1/event", fmt.Appendf(nil, `{"ts":%d,"seq":1,"event":"smoke_alarm"}`, t0-3_600_000))
	if got := transitions(events.evs); got != "smoke.smoke_alarm:raise" {
		t.Fatalf("events %q: the smoke alarm after a reboot was lost", got)
	}
	if !strings.Contains(string(lines.b), "smoke_alarm=1") {
		t.Fatalf("the smoke alarm was not stored: %q", lines.b)
	}
}

// Defect 4: a device whose clock stepped back keeps being evaluated, and
// liveness hears it.
func TestClockSteppedBack(t *testing.T) {
	p, _, events := clockPipeline(t, t0)
	live, err := devices.NewLiveness(p.dec.Ledger(), devices.LivenessConfig{Tick: time.Second, Heartbeat: [devices.NumKinds]time.Duration{devices.KindElectrical: time.Minute}},
		newLivenessAlarms(p.dec.Ledger(), events), t0)
	if err != nil {
		t.Fatal(err)
	}
	p.live = live
	d, _ := p.dec.Ledger().LookupID("el-1")
	msg := func(now, ts int64, seq int, ma float64) {
		p.clock.ms.Store(now)
		p.handle("fw/v1/up/el-1/telemetry", fmt.Appendf(nil, `{"ts":%d,"seq":%d,"m":{"residual_current_ma":%g}}`, ts, seq, ma))
	}
	msg(t0, t0, 1, 100)
	// NTP steps the clock back an hour; the device keeps reporting every
	// 30 s, and its residual current rises over the alarm threshold
	// (300 mA for 10 s).
	for i := 1; i <= 10; i++ {
		now := t0 + int64(i)*30_000
		ma := 100.0
		if i >= 8 {
			ma = 350
		}
		msg(now, now-3_600_000, 1+i, ma)
		live.Tick(now)
	}
	got := transitions(events.evs)
	if !strings.Contains(got, "electrical.residual_current.alarm:raise") {
		t.Errorf("events %q: the device whose clock went back was not evaluated", got)
	}
	if strings.Contains(got, "offline") || !live.Status(d.Index).Online {
		t.Errorf("events %q: a talking device was raised offline", got)
	}
	if !strings.Contains(got, "electrical.clock:raise") {
		t.Errorf("events %q: the clock fault (时钟异常) was not raised", got)
	}
	for _, ev := range events.evs {
		if ev.Rule.ID == "electrical.clock" && !strings.Contains(ev.Rule.NoteZH, "时钟异常") {
			t.Errorf("the clock fault's dispatcher text %q does not say 时钟异常", ev.Rule.NoteZH)
		}
	}
	// The clock is right again: the fault clears.
	msg(t0+400_000, t0+400_000, 20, 100)
	if got := transitions(events.evs); !strings.Contains(got, "electrical.clock:clear") {
		t.Errorf("events %q: the clock fault did not clear", got)
	}
}

// Defect 5: a smoke alarm from a detector whose clock reset to 2000-01-01
// is raised and stored (at its receive time), not rejected as ts_too_old.
// Issue 21 #11: a gateway's replay of an outage longer than ingest.max_age
// is stored under its own time, not refused after firegate committed it.
func TestWrongClocksAreNotRejected(t *testing.T) {
	now := t0
	p, lines, events := clockPipeline(t, now)
	p.handle("fw/v1/up/sm-1/event", []byte(`{"ts":946684800000,"seq":1,"event":"smoke_alarm"}`))
	if got := transitions(events.evs); got != "smoke.smoke_alarm:raise" {
		t.Fatalf("events %q: the smoke alarm of a reset clock was lost", got)
	}
	if want := fmt.Sprintf("smoke_alarm=1 %d\n", now); !strings.HasSuffix(string(lines.b), want) {
		t.Fatalf("stored %q, want it at the receive time (%s)", lines.b, want)
	}
	old := now - 8*24*3600*1000
	lines.b = lines.b[:0]
	p.handle("fw/v1/up/gw/gw-1/batch", fmt.Appendf(nil, `{"readings":[{"dev":"hy-1","ts":%d,"seq":7,"m":{"pressure_mpa":0.3}}]}`, old))
	if want := fmt.Sprintf("pressure_mpa=0.3 %d\n", old); !strings.HasSuffix(string(lines.b), want) {
		t.Fatalf("stored %q, want the replay under its own time (%s)", lines.b, want)
	}
}

// Issue 21 #10: two readings without ts within one tick of the receive
// clock are both kept (distinct times), and a QoS 1 redelivery of one is
// not stored again.
func TestReadingsWithoutTS(t *testing.T) {
	p, lines, _ := clockPipeline(t, t0)
	p.handle("fw/v1/up/hy-1/telemetry", []byte(`{"seq":1,"m":{"pressure_mpa":0.30}}`))
	p.handle("fw/v1/up/hy-1/telemetry", []byte(`{"seq":2,"m":{"pressure_mpa":0.31}}`))
	p.handle("fw/v1/up/hy-1/telemetry", []byte(`{"seq":2,"m":{"pressure_mpa":0.31}}`)) // redelivered
	want := fmt.Sprintf("pressure_mpa=0.3 %d\n", t0) + fmt.Sprintf("pressure_mpa=0.31 %d\n", t0+1)
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(lines.b)), "\n") {
		got = append(got, l[strings.Index(l, " ")+1:])
	}
	if strings.Join(got, "\n")+"\n" != want {
		t.Fatalf("stored\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}
