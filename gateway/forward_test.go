package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/spool/spooltest"
)

// TestForwarderSurvivesSpoolFaults (defect 3): with a real Mosquitto and
// a simulated bus, the spool's disk fails under firegate: reads fail with
// EIO and ack writes fail (the old forwarder exited on the first such
// error, for good), then appends fail with ENOSPC. The forwarder retries,
// reports the errors in /metrics and the status message, and once the
// disk is back every reading spooled before and during the read faults
// arrives, in sequence, and new ones follow.
func TestForwarderSurvivesSpoolFaults(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	bus := simBus(t, 115200)
	el := bus.AddSlave(1, maps["ARCM300"])
	el.Set("residual_current_ma", 0, 87)
	coll, _ := collect(t, mq.URL)
	fs := spooltest.New()
	cfg := gateway.Defaults()
	cfg.GatewayID = "gw-t"
	cfg.MQTT.Broker = mq.URL
	cfg.MQTT.ReconnectMax = time.Second
	cfg.Spool.Dir = t.TempDir()
	cfg.Spool.FS = fs
	cfg.StatusInterval = time.Second // the least Validate accepts
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.Buses = []gateway.BusConfig{{Port: bus.Path, Baud: 115200, Timeout: 100 * time.Millisecond,
		Devices: []gateway.DeviceConfig{{ID: "el-1", Model: "ARCM300", Slave: 1, Interval: 100 * time.Millisecond, OfflineAfter: 3}}}}
	g, err := gateway.New(cfg, maps, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
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
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10 s")
		}
	})
	metric := func(name string) float64 {
		resp, err := http.Get("http://" + g.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics lacks %s", name)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	testenv.WaitFor(t, 10*time.Second, "first readings", func() bool { return len(coll.snapshot()) >= 5 })

	// The disk's reads fail and the ack file cannot be replaced.
	fs.Inject(spooltest.Fault{Op: spooltest.OpRead, Err: spooltest.EIO, Match: ".seg"})
	fs.Inject(spooltest.Fault{Op: spooltest.OpRename, Err: spooltest.EIO, Match: "ack"})
	testenv.WaitFor(t, 10*time.Second, "failed spool reads", func() bool { return metric("firewatch_spool_errors_total") >= 3 })
	fs.Heal()
	healed := time.Now().UnixMilli()
	testenv.WaitFor(t, 15*time.Second, "readings after the read faults", func() bool {
		for _, r := range coll.snapshot() {
			if r.TS > healed {
				return true
			}
		}
		return false
	})
	// Nothing spooled before or during the read faults is lost.
	checkSeq := func(what string) {
		t.Helper()
		last := int64(-1)
		for _, r := range coll.snapshot() {
			if r.Dev != "el-1" {
				continue
			}
			if last >= 0 && r.Seq != last+1 && r.Seq > last {
				t.Errorf("%s: el-1 seq %d after %d: readings lost", what, r.Seq, last)
			}
			last = max(last, r.Seq)
		}
	}
	checkSeq("read faults")
	if v := metric("firewatch_gateway_forward_errors_total"); v == 0 {
		t.Error("firewatch_gateway_forward_errors_total = 0 after read faults")
	}

	// Disk full: appends fail (those readings are lost and counted), and
	// forwarding resumes when there is room again.
	before := metric("firewatch_spool_errors_total")
	fs.Inject(spooltest.Fault{Op: spooltest.OpWrite, Err: spooltest.ENOSPC, Match: ".seg"})
	testenv.WaitFor(t, 10*time.Second, "failed appends counted", func() bool { return metric("firewatch_spool_errors_total") > before+2 })
	fs.Heal()
	healed = time.Now().UnixMilli()
	testenv.WaitFor(t, 15*time.Second, "readings after the disk-full", func() bool {
		for _, r := range coll.snapshot() {
			if r.TS > healed {
				return true
			}
		}
		return false
	})
	testenv.WaitFor(t, 10*time.Second, "spool healthy again", func() bool { return metric("firewatch_spool_healthy") == 1 })
	testenv.WaitFor(t, 10*time.Second, "status reporting spool health", func() bool {
		coll.mu.Lock()
		defer coll.mu.Unlock()
		for _, s := range coll.status {
			if h, ok := s["spool"].(map[string]any); ok && h["healthy"] == true && h["errors"].(float64) > 0 && h["forward_errors"].(float64) >= 1 {
				return true
			}
		}
		return false
	})
}
