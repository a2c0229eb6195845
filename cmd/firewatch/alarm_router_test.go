package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
)

// TestTopicRouter: station reports go to the alarm manager, everything else
// to the pipeline.
func TestTopicRouter(t *testing.T) {
	l, err := devices.LoadLedger(writeLedger(t, "http://127.0.0.1:1/none"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := alarms.NewManager(alarms.Config{DBPath: filepath.Join(t.TempDir(), "a.db"), Secret: []byte("s"),
		Logger: slog.New(slog.DiscardHandler)}, l)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var piped []string
	r := newTopicRouter(func(topic string, _ []byte) { piped = append(piped, topic) }, m, slog.New(slog.DiscardHandler))
	r.handle("fw/v1/up/station/st-tanxi/status", []byte(`{"duty":"busy","note":"出警"}`))
	r.handle("fw/v1/up/station/st-tanxi/other", []byte(`{}`))
	r.handle("fw/v1/up/station/st-ghost/status", []byte(`{"duty":"busy"}`))
	r.handle("fw/v1/up/el-1/telemetry", []byte(`{}`))
	if len(piped) != 1 || piped[0] != "fw/v1/up/el-1/telemetry" {
		t.Errorf("pipeline got %v, want only the telemetry", piped)
	}
	ss, err := m.StationStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || ss[0].Duty != alarms.DutyBusy || ss[0].By != "mqtt" || ss[0].Note != "出警" || ss[0].Ready {
		t.Errorf("station status %+v", ss)
	}
}
