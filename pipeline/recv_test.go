package pipeline

import (
	"fmt"
	"strings"
	"testing"
)

// Issue 15: a message that waited in the stream (a partition's backlog
// after a takeover, an owner that lagged) is judged at its arrival there
// (Message.Recv), not when the pipeline takes it.

// recvPipeline is clockPipeline whose receive clock reads now, with a
// store for Take.
func recvPipeline(t *testing.T, now int64) (*Pipeline, *fakeLines, *fakeEvents) {
	t.Helper()
	p, lines, events := clockPipeline(t, now)
	p.alarms = &fakeAlarms{}
	return p, lines, events
}

// lineTimes returns the times (ms, the writer's precision) of the line protocol lines, in order.
func lineTimes(b []byte) []string {
	var ts []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		ts = append(ts, f[len(f)-1])
	}
	return ts
}

// A device with a right clock whose messages reach the pipeline 20 s after
// they arrived in the stream raises no clock fault, and its readings stand
// at their ts. (This holds on the code before the fix too: a ts behind the
// pipeline's now is believed; it guards the fix.)
func TestLateDeliveredRightClockNoFault(t *testing.T) {
	for _, topic := range []string{"fw/v1/up/sm-1/telemetry", "fw/v1/up/gw/gw-1/batch"} {
		t.Run(topic, func(t *testing.T) {
			p, lines, events := recvPipeline(t, t0+20_000+30*3000)
			for i := range 30 {
				ts := t0 + int64(i)*3000
				msg := fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"battery_pct":90}}`, ts, i+1)
				if strings.Contains(topic, "/gw/") {
					msg = `{"readings":[` + strings.Replace(msg, "{", `{"dev":"sm-1",`, 1) + `]}`
				}
				if err := p.Take(Message{Topic: topic, Payload: []byte(msg), Recv: ts + 150}); err != nil {
					t.Fatal(err)
				}
			}
			if got := transitions(events.evs); got != "" {
				t.Fatalf("events %q from a right clock delivered 20 s late", got)
			}
			if got := lineTimes(lines.b); got[0] != fmt.Sprint(t0) || got[29] != fmt.Sprint((t0+29*3000)) {
				t.Fatalf("readings at %v…%v, want their ts", got[0], got[29])
			}
		})
	}
}

// A device whose clock really is wrong gets its clock fault although its
// messages were taken late: a clock 11 min ahead (ingest.max_future is
// 10 min) whose messages waited 5 min in the stream (an owner's outage)
// was believed by the old code (only 6 min ahead of when it took them),
// its readings stored 11 min in the future and no 时钟异常 raised. And a
// clock that went back still raises it.
func TestLateDeliveredWrongClockFaults(t *testing.T) {
	t.Run("ahead", func(t *testing.T) {
		arrived := t0
		p, lines, events := recvPipeline(t, arrived+5*60_000+10*1000)
		for i := range 4 {
			at := arrived + int64(i)*1000
			msg := fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"battery_pct":90}}`, at+11*60_000, i+1)
			if err := p.Take(Message{Topic: "fw/v1/up/sm-1/telemetry", Payload: []byte(msg), Recv: at}); err != nil {
				t.Fatal(err)
			}
		}
		if got := transitions(events.evs); got != "smoke.clock:raise" {
			t.Fatalf("events %q, want the clock fault of a clock 11 min ahead of the messages' arrival", got)
		}
		if got := lineTimes(lines.b); got[0] != fmt.Sprint(arrived) {
			t.Fatalf("first reading at %v, want its arrival %v (its ts is not believed)", got[0], arrived)
		}
	})
	t.Run("behind", func(t *testing.T) {
		p, _, events := recvPipeline(t, t0+20*60_000)
		send := func(ts int64, seq int, recv int64) {
			msg := fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"battery_pct":90}}`, ts, seq)
			if err := p.Take(Message{Topic: "fw/v1/up/sm-1/telemetry", Payload: []byte(msg), Recv: recv}); err != nil {
				t.Fatal(err)
			}
		}
		send(t0, 1, t0+100)
		// The clock went back 10 min; the messages waited 20 s each.
		for i := range 3 {
			at := t0 + int64(i+1)*3000
			send(at-10*60_000, i+2, at)
		}
		if got := transitions(events.evs); got != "smoke.clock:raise" {
			t.Fatalf("events %q, want the clock fault of a clock that went back", got)
		}
		if ev := events.evs[0]; ev.Rule.ID != "smoke.clock" || ev.Since != t0+3*3000 {
			t.Fatalf("clock fault since %d, want its message's arrival %d", ev.Since, t0+3*3000)
		}
	})
}

// A reading without a believable ts that waited in the stream stands at its
// arrival, not at the time the pipeline took it: a backlog is not piled up
// at the moment of the catch-up (and a `for` over such readings measures
// the time they took to arrive). Failed on the old code: the reading stood
// at the pipeline's now.
func TestLateDeliveredNoTSStandsAtArrival(t *testing.T) {
	p, lines, _ := recvPipeline(t, t0+60_000)
	for i := range 3 {
		msg := fmt.Sprintf(`{"seq":%d,"m":{"residual_current_ma":20}}`, i+1)
		if err := p.Take(Message{Topic: "fw/v1/up/el-1/telemetry", Payload: []byte(msg), Recv: t0 + int64(i)*10_000}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{fmt.Sprint(t0), fmt.Sprint((t0 + 10_000)), fmt.Sprint((t0 + 20_000))}
	if got := lineTimes(lines.b); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("readings at %v, want their arrivals %v", got, want)
	}
	// A receive time after now (another machine's clock ahead) is now;
	// zero is now.
	lines.b = lines.b[:0]
	p.Take(Message{Topic: "fw/v1/up/el-1/telemetry", Payload: []byte(`{"seq":4,"m":{"residual_current_ma":20}}`), Recv: t0 + 90_000})
	p.Take(Message{Topic: "fw/v1/up/el-1/telemetry", Payload: []byte(`{"seq":5,"m":{"residual_current_ma":20}}`)})
	if got := lineTimes(lines.b); got[0] != fmt.Sprint((t0+60_000)) || got[1] != fmt.Sprint((t0+60_001)) {
		t.Fatalf("readings at %v, want now (and a millisecond later)", got)
	}
}

// The next owner of a partition writes again, at the stream's time of it,
// a message the previous owner handled and did not acknowledge
// (TakeHandled). The previous owner took it at the same time, so a reading
// without a believable ts lands on the same InfluxDB point instead of a
// second one. Failed on the old code: the previous owner's point stood at
// when it took the message.
func TestTakeHandledSamePointAsTake(t *testing.T) {
	arrived := t0
	msg := Message{Topic: "fw/v1/up/el-1/telemetry", Payload: []byte(`{"seq":1,"m":{"residual_current_ma":20}}`), Recv: arrived}
	a, aLines, _ := recvPipeline(t, arrived+2_500) // the owner took it 2.5 s after it arrived
	if err := a.Take(msg); err != nil {
		t.Fatal(err)
	}
	b, bLines, _ := recvPipeline(t, arrived+9_000) // and died; the next owner writes it again
	if err := b.TakeHandled(msg, msg.Recv); err != nil {
		t.Fatal(err)
	}
	if string(aLines.b) != string(bLines.b) {
		t.Fatalf("owner wrote %q, next owner %q: two points for one reading", aLines.b, bLines.b)
	}
}

// Liveness sees a device at its message's arrival, learnt now: a message
// that waited does not make the device look heard later than it was.
func TestLateDeliveredLiveness(t *testing.T) {
	p, _, events := recvPipeline(t, t0+30_000)
	live, err := newLiveness(DefaultLiveness(), p.dec.Ledger(), newLivenessAlarms(p.dec.Ledger(), events), t0-60_000, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.live = live
	d, _ := p.dec.Ledger().LookupID("sm-1")
	p.Take(Message{Topic: "fw/v1/up/sm-1/status", Payload: fmt.Appendf(nil, `{"ts":%d,"seq":1,"m":{"battery_pct":80}}`, t0), Recv: t0 + 100})
	if st := live.Status(d.Index); st.LastSeen != t0+100 {
		t.Fatalf("last seen %d, want the arrival %d", st.LastSeen, t0+100)
	}
	if got := transitions(events.evs); got != "" {
		t.Fatalf("events %q", got)
	}
}
