package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestFiregateExampleEmbeddedBroker follows docs/gateway.md as a new user
// would: firewatch with its embedded broker (mqtt.auth: ledger) and firegate
// with docs/firegate.example.yaml, changed only where a test must (the
// broker address, the gateway's secret, the serial ports, the spool
// directory, no /metrics port). firegate's readings must reach InfluxDB.
// Before issue 17 firegate's default client id firegate-{gateway_id} was
// refused for ever by the embedded broker, which requires client id = user
// name.
func TestFiregateExampleEmbeddedBroker(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	cfg := defaults()
	cfg.Ledger = "../../devices/testdata/ledger.yaml" // gw-1, secret gw-1-secret; el-1, hy-1, ch-1 behind it
	cfg.MQTT.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Influx.URL = db.URL
	cfg.Influx.Bucket = db.Bucket
	cfg.Influx.FlushInterval = 100 * time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = e2eSecret
	cfg.HTTP.Listen = "127.0.0.1:0"
	s, _ := runService(t, &cfg, slog.LevelWarn)

	gc, err := gateway.LoadConfig("../../docs/firegate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	gc.MQTT.Broker = "tcp://" + cfg.MQTT.Listen
	gc.MQTT.Password = "gw-1-secret"
	gc.Spool.Dir = t.TempDir()
	gc.MetricsListen = ""
	r := &gwRig{t: t}
	for i := range gc.Buses {
		b := r.bus(gc.Buses[i].Baud)
		gc.Buses[i].Port = b.Path
		for _, d := range gc.Buses[i].Devices {
			sl := b.AddSlave(byte(d.Slave), maps[d.Model])
			for j := range sl.Map.Points {
				p := &sl.Map.Points[j]
				if err := sl.Set(p.Metric.String(), p.Ch, gwValue(p.Metric.String(), p.Ch)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := gc.Validate(maps); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gc, maps, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("firegate did not stop within 15 s")
		}
	})
	// The example polls el-1 every 10 s and ch-1 every 5 s, the first poll
	// within one interval.
	testenv.WaitFor(t, 40*time.Second, "readings of el-1 and ch-1 from firegate in InfluxDB", func() bool {
		return db.Count(t, "electrical") > 0 && db.Count(t, "charger") > 0
	})
	m := scrape(t, s.httpURL()+"/metrics")
	for _, reason := range []string{"unknown_user", "bad_secret", "client_id"} {
		if v := m[`firewatch_broker_denied_total{reason="`+reason+`"}`]; v != 0 {
			t.Errorf("the embedded broker refused firegate %v times (%s)", v, reason)
		}
	}
}
