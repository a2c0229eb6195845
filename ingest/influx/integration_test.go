package influx

import (
	"context"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// TestInfluxDBRoundTrip writes readings of every kind and alarms through the
// Writer into a real InfluxDB 1.8 and reads them back with Flux: tags,
// values and times must come back exactly.
func TestInfluxDBRoundTrip(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	l := newTestLedger(t)
	e := NewEncoder(l)
	w, _, stop := startWriter(t, Config{URL: db.URL, Bucket: db.Bucket, FlushInterval: time.Hour})

	const ts = int64(1795420800123)
	K := devices.KindElectrical
	rc, temp := metric(t, K, "residual_current_ma"), metric(t, K, "cable_temp_c")
	type reading struct {
		dev   devices.Index
		ch    uint8
		ms    []devices.Metric
		vs    []float64
		field string
		time  int64
	}
	in := []reading{
		{0, 0, []devices.Metric{rc}, []float64{350}, "residual_current_ma", ts},
		{0, 3, []devices.Metric{temp}, []float64{0.1}, "cable_temp_c", ts + 1},
		{0, 8, []devices.Metric{temp}, []float64{-12.5}, "cable_temp_c", ts + 2},
		{0, 0, []devices.Metric{rc}, []float64{1e-7}, "residual_current_ma", ts + 3},
		{0, 0, []devices.Metric{rc}, []float64{1.5e21}, "residual_current_ma", ts + 4},
		{0, 0, []devices.Metric{rc}, []float64{123456789.125}, "residual_current_ma", ts + 5},
		{1, 0, []devices.Metric{metric(t, devices.KindSmoke, "smoke_alarm")}, []float64{1}, "smoke_alarm", ts + 6},
		{2, 0, []devices.Metric{metric(t, devices.KindHydrant, "pressure_mpa")}, []float64{0.35}, "pressure_mpa", ts + 7},
		{3, 16, []devices.Metric{metric(t, devices.KindCharger, "slot_power_w")}, []float64{460}, "slot_power_w", ts + 8},
	}
	var buf []byte
	for _, r := range in {
		buf = e.AppendLine(buf[:0], r.dev, r.ch, r.ms, r.vs, r.time)
		w.Write(buf)
	}
	alarm := AlarmPoint{Device: 0, Rule: "cable temp, high=80", Severity: "fire", State: "raised",
		Value: 85.5, Threshold: 80, AlarmID: "A-1", Time: ts + 10,
		Message: "柳南区南站街道 \"线缆\" 温度 85.5 °C\nC:\\配电箱, 3 号"}
	w.Write(e.AppendAlarm(nil, alarm))
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}

	rows := db.Flux(t, `from(bucket: "firewatch/autogen")
  |> range(start: 2026-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement != "alarms")`)
	if len(rows) != len(in) {
		t.Fatalf("%d rows, want %d: %v", len(rows), len(in), rows)
	}
	sort.Slice(rows, func(i, j int) bool { return fluxTime(t, rows[i]) < fluxTime(t, rows[j]) })
	for i, r := range in {
		row := rows[i]
		d := &l.Devices[r.dev]
		want := map[string]string{
			"_measurement": d.Kind.String(), "_field": r.field, "device": d.ID, "kind": d.Kind.String(),
			"county": d.Grid.County(), "town": d.Grid.Town(), "village": d.Grid.Village(),
		}
		if got := fluxTime(t, row); got != r.time {
			t.Errorf("reading %d: time %d, want %d", i, got, r.time)
		}
		if r.ch != 0 {
			want["ch"] = strconv.Itoa(int(r.ch))
		}
		for k, v := range want {
			if row[k] != v {
				t.Errorf("reading %d: %s = %q, want %q (row %v)", i, k, row[k], v, row)
			}
		}
		if _, ok := row["ch"]; ok && r.ch == 0 {
			t.Errorf("reading %d has a ch tag: %v", i, row)
		}
		got, err := strconv.ParseFloat(row["_value"], 64)
		if err != nil || got != r.vs[0] {
			t.Errorf("reading %d: value %q, want %v", i, row["_value"], r.vs[0])
		}
	}

	rows = db.Flux(t, `from(bucket: "firewatch/autogen")
  |> range(start: 2026-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "alarms")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`)
	if len(rows) != 1 {
		t.Fatalf("alarms: %d rows: %v", len(rows), rows)
	}
	want := map[string]string{
		"device": "el-0001", "kind": "electrical", "county": "450204", "town": "450204001", "village": "450204001001",
		"rule": alarm.Rule, "severity": "fire", "state": "raised", "alarm_id": "A-1", "value": "85.5", "threshold": "80",
		"message": strings.ReplaceAll(alarm.Message, "\n", " "),
	}
	if got := fluxTime(t, rows[0]); got != alarm.Time {
		t.Errorf("alarm time %d, want %d", got, alarm.Time)
	}
	for k, v := range want {
		if rows[0][k] != v {
			t.Errorf("alarm %s = %q, want %q", k, rows[0][k], v)
		}
	}
	if n := db.Count(t, "electrical"); n != 6 {
		t.Errorf("Count(electrical) = %d, want 6", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestInfluxDBOutage stops InfluxDB while lines are written: the writer
// keeps them queued and retrying, and delivers every one after Start.
func TestInfluxDBOutage(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	e := NewEncoder(newTestLedger(t))
	w, reg, stop := startWriter(t, Config{URL: db.URL, Bucket: db.Bucket, BatchLines: 100,
		FlushInterval: 50 * time.Millisecond, Timeout: 2 * time.Second})
	rc := metric(t, devices.KindElectrical, "residual_current_ma")
	write := func(from, to int) {
		var buf []byte
		for i := from; i < to; i++ {
			buf = e.AppendLine(buf, 0, 0, []devices.Metric{rc}, []float64{float64(i)}, 1795420800000+int64(i))
		}
		w.Write(buf)
	}
	write(0, 250)
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}

	db.Stop()
	write(250, 1000)
	// Not deliverable now: Flush waits and gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if err := w.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded while InfluxDB was stopped")
	}
	cancel()
	if v := metricValue(t, reg, "firewatch_influx_write_errors_total", ""); v < 1 {
		t.Errorf("write errors = %v while InfluxDB was down", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_pending_batches", ""); v < 1 {
		t.Errorf("pending batches = %v while InfluxDB was down", v)
	}

	db.Start()
	write(1000, 1100)
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "electrical"); n != 1100 {
		t.Fatalf("Count = %d, want 1100", n)
	}
	rows := db.Flux(t, `from(bucket: "firewatch/autogen")
  |> range(start: 2026-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "electrical")
  |> sum()`)
	if len(rows) != 1 || rows[0]["_value"] != strconv.Itoa(1099*1100/2) {
		t.Errorf("sum of values = %v, want %d", rows, 1099*1100/2)
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropQueueFull); v != 0 {
		t.Errorf("dropped = %v", v)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestInfluxDBRejects checks the non-retryable path against the real
// server: a bad line costs itself, not the lines around it, and is not
// retried forever.
func TestInfluxDBRejects(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	reg := prometheus.NewRegistry()
	w, err := NewWriter(Config{URL: db.URL, Bucket: db.Bucket, FlushInterval: time.Hour, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	w.Write([]byte("probe,device=a v=1 1795420800000\nprobe,device=b v=oops 1795420800001\nprobe,device=c v=3 1795420800002\n"))
	if err := flush(t, w); err == nil {
		t.Fatal("Flush reported no loss for an unparsable line")
	}
	if n := db.Count(t, "probe"); n != 2 {
		t.Errorf("Count = %d, want the 2 good lines (1.8 writes around a bad line)", n)
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropRejected); v != 1 {
		t.Errorf("dropped{rejected} = %v, want 1", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_write_errors_total", ""); v != 1 {
		t.Errorf("write errors = %v, want 1 (no retry)", v)
	}
}

// fluxTime returns a row's _time in Unix milliseconds.
func fluxTime(t *testing.T, row map[string]string) int64 {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, row["_time"])
	if err != nil {
		t.Fatalf("_time: %v", err)
	}
	return tm.UnixMilli()
}
