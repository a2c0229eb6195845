package pipeline

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firewatch-iot/firewatch/rules"
)

// fakeAlarms records what the pipeline hands the alarm manager.
type fakeAlarms struct {
	fakeEvents
	stations, acks []string
	syncs          int
	syncErr        error // what Sync returns (unacked_test.go)
}

func (f *fakeAlarms) Sync() error { f.syncs++; return f.syncErr }
func (f *fakeAlarms) CommandAck(_ context.Context, dev string, _ []byte) error {
	f.acks = append(f.acks, dev)
	return nil
}
func (f *fakeAlarms) StationStatus(_ context.Context, id string, payload []byte, by string) error {
	if id == "st-ghost" {
		return errors.New("unknown station")
	}
	f.stations = append(f.stations, id+" "+by+" "+string(payload))
	return nil
}
func (f *fakeAlarms) OpenAlarms(context.Context, rules.Severity, func(OpenAlarm)) error { return nil }

// TestRouter: station reports and command acknowledgements go to the alarm
// manager, everything else to the hot path, after which the alarm manager
// is synced.
func TestRouter(t *testing.T) {
	p, lines, _, stats := newTestPipeline(t)
	a := &fakeAlarms{}
	p.alarms = a
	p.Handle("fw/v1/up/station/st-tanxi/status", []byte(`{"duty":"busy","note":"出警"}`))
	p.Handle("fw/v1/up/station/st-tanxi/other", []byte(`{}`))
	p.Handle("fw/v1/up/station/st-ghost/status", []byte(`{"duty":"busy"}`))
	p.Handle("fw/v1/up/el-1/ack", []byte(`{"id":"c1"}`))
	p.Handle("fw/v1/up/el-1/telemetry", []byte(`{"ts":1000,"seq":1,"m":{"residual_current_ma":20}}`))
	if n := testutil.ToFloat64(stats.Messages); n != 1 || len(lines.b) == 0 {
		t.Errorf("hot path took %v messages (lines %q), want only the telemetry", n, lines.b)
	}
	if len(a.stations) != 1 || a.stations[0] != `st-tanxi mqtt {"duty":"busy","note":"出警"}` {
		t.Errorf("station reports %q", a.stations)
	}
	if len(a.acks) != 1 || a.acks[0] != "el-1" {
		t.Errorf("acknowledgements %q", a.acks)
	}
	if a.syncs != 1 {
		t.Errorf("alarm manager synced %d times, want once (after the telemetry)", a.syncs)
	}
}
