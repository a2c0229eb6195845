package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/rules"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeLines struct{ b []byte }

func (f *fakeLines) Write(lines []byte) { f.b = append(f.b, lines...) }

type fakeEvents struct{ evs []rules.Event }

func (f *fakeEvents) Submit(ev rules.Event) { f.evs = append(f.evs, ev) }

func newTestPipeline(t testing.TB) (*pipeline, *fakeLines, *fakeEvents, *ingest.Stats) {
	t.Helper()
	l, err := devices.LoadLedger("../../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rules.NewEngine(set, l)
	if err != nil {
		t.Fatal(err)
	}
	lines, events := &fakeLines{}, &fakeEvents{}
	stats := ingest.NewStats(nil, discardLogger())
	return newPipeline(l, eng, lines, events, stats, prometheus.NewRegistry()), lines, events, stats
}

func TestPipeline(t *testing.T) {
	p, lines, events, stats := newTestPipeline(t)
	p.handle("fw/v1/up/el-1/telemetry", []byte(`{"ts":1000,"seq":1,"m":{"residual_current_ma":350,"voltage_v":220}}`))
	p.handle("fw/v1/up/el-1/telemetry", []byte(`{"ts":12000,"seq":2,"m":{"residual_current_ma":351}}`))
	p.handle("fw/v1/up/sm-1/event", []byte(`{"ts":5000,"seq":1,"event":"smoke_alarm"}`))
	p.handle("fw/v1/up/sm-1/status", []byte(`{"ts":5000}`)) // bare heartbeat: no line
	p.handle("fw/v1/up/el-1/telemetry", []byte(`{"m":{"residual_current_ma":"NaN"}}`))

	want := "electrical,county=450204,device=el-1,kind=electrical,town=450204002,village=450204002003 residual_current_ma=350,voltage_v=220 1000\n" +
		"electrical,county=450204,device=el-1,kind=electrical,town=450204002,village=450204002003 residual_current_ma=351 12000\n" +
		"smoke,county=450204,device=sm-1,kind=smoke,town=450204002,village=450204002003 smoke_alarm=1 5000\n"
	if string(lines.b) != want {
		t.Errorf("line protocol:\n%s\nwant:\n%s", lines.b, want)
	}
	var ids []string
	for _, ev := range events.evs {
		ids = append(ids, ev.Rule.ID+":"+ev.Transition.String())
	}
	if got := strings.Join(ids, " "); got != "electrical.residual_current.alarm:raise smoke.smoke_alarm:raise" {
		t.Errorf("events: %s", got)
	}
	if n := testutil.ToFloat64(stats.Readings); n != 4 {
		t.Errorf("readings counted: %v, want 4", n)
	}
	if n := testutil.ToFloat64(stats.Messages); n != 5 {
		t.Errorf("messages counted: %v, want 5", n)
	}
}

// BenchmarkPipeline is the in-process hot path: decode + evaluate + encode
// line protocol, per message of one reading and per gateway batch.
func BenchmarkPipeline(b *testing.B) {
	for _, c := range []struct{ name, topic, payload string }{
		{"single", "fw/v1/up/el-1/telemetry", `{"ts":1795420800123,"seq":42,"m":{"residual_current_ma":132.5}}`},
		{"batch10", "fw/v1/up/gw/gw-1/batch", `{"readings":[` + strings.Repeat(`{"dev":"hy-1","ts":1795420800123,"seq":1,"m":{"pressure_mpa":0.31}},`, 9) +
			`{"dev":"ch-1","ts":1795420800123,"seq":1,"ch":3,"m":{"slot_temp_c":38.5}}]}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, lines, _, stats := newTestPipeline(b)
			payload := []byte(c.payload)
			b.ReportAllocs()
			for b.Loop() {
				lines.b = lines.b[:0]
				p.handle(c.topic, payload)
			}
			b.ReportMetric(testutil.ToFloat64(stats.Readings)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
