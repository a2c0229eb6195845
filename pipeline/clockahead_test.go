package pipeline

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// A detector whose clock ran five minutes ahead (within ingest.max_future,
// so its ts were believed), then set right by NTP, as the pipeline sees
// its messages: after the correction its readings are stored at their own
// ts, not five minutes in the future, its clock fault (时钟异常) is not
// raised, and a smoke alarm is raised at its time. Before the fix the
// correction was taken for a clock that went back by the lead: every later
// reading was stored five minutes ahead and the clock fault was raised and
// never cleared.
func TestClockAheadSetRightPipeline(t *testing.T) {
	p, lines, events := clockPipeline(t, t0)
	send := func(now, ts int64, seq int, body string) {
		p.clock.ms.Store(now)
		p.handle("fw/v1/up/sm-1/status", fmt.Appendf(nil, `{"ts":%d,"seq":%d,%s}`, ts, seq, body))
	}
	const lead = 5 * 60_000
	seq := 0
	now := t0
	for range 30 { // ahead, a report every 20 s
		now += 20_000
		seq++
		send(now, now+lead, seq, `"m":{"battery_pct":90}`)
	}
	for i := range 10 { // set right
		now += 20_000
		seq++
		lines.b = lines.b[:0]
		send(now, now-300, seq, `"m":{"battery_pct":90}`)
		line := strings.TrimSpace(string(lines.b))
		stored, err := strconv.ParseInt(line[strings.LastIndexByte(line, ' ')+1:], 10, 64)
		if err != nil || stored != now-300 {
			t.Fatalf("report %d after the clock was set right stored at %+d ms from its ts: %q", i, stored-(now-300), line)
		}
	}
	if got := transitions(events.evs); got != "" {
		t.Fatalf("events %q for a clock that was ahead and is right now", got)
	}
	now += 20_000
	seq++
	send(now, now-300, seq, `"event":"smoke_alarm"`)
	if got := transitions(events.evs); got != "smoke.smoke_alarm:raise" || events.evs[0].Time != now-300 {
		t.Fatalf("events %q (time %+d ms): the smoke alarm after the correction", got, events.evs[len(events.evs)-1].Time-(now-300))
	}
}
