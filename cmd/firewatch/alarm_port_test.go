package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/pipeline"
)

type discardLines struct{}

func (discardLines) Write([]byte) {}

// TestAlarmPort: through the adapter, a station's duty report on MQTT
// reaches the real alarm manager's store (the pipeline's router is tested
// with a fake in pipeline/router_test.go).
func TestAlarmPort(t *testing.T) {
	l, err := devices.LoadLedger(writeLedger(t, "http://127.0.0.1:1/none"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := alarms.NewManager(alarms.Config{DBPath: filepath.Join(t.TempDir(), "a.db"), Secret: []byte("s"),
		Logger: discardLogger()}, l)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cfg := defaults()
	p, err := pipeline.New(pipeline.Options{Ledger: l, Lines: discardLines{}, Alarms: alarmPort{m},
		Ingest: cfg.Ingest, Liveness: cfg.Liveness, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p.Handle("fw/v1/up/station/st-tanxi/status", []byte(`{"duty":"busy","note":"出警"}`))
	p.Handle("fw/v1/up/station/st-tanxi/other", []byte(`{}`))
	p.Handle("fw/v1/up/station/st-ghost/status", []byte(`{"duty":"busy"}`))
	ss, err := m.StationStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || ss[0].Duty != alarms.DutyBusy || ss[0].By != "mqtt" || ss[0].Note != "出警" || ss[0].Ready {
		t.Errorf("station status %+v", ss)
	}
	// An open offline alarm is found again by the restore at start.
	p.Handle("fw/v1/up/sm-1/event", []byte(`{"ts":1000,"seq":1,"event":"smoke_alarm"}`))
	n := 0
	if err := (alarmPort{m}).OpenAlarms(ctx, 0, func(a pipeline.OpenAlarm) { n++ }); err != nil || n != 1 {
		t.Errorf("open alarms: %d, %v; want the smoke alarm", n, err)
	}
}
