package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestPushLatency measures device publish → webhook received for smoke
// alarms while firesim publishes a background fleet, through a real
// Mosquitto, the firewatch binary and a real InfluxDB. It is a measurement,
// not a check: run it with FIREWATCH_LATENCY=1 (FIREWATCH_LATENCY_RATE sets
// the fleet's messages per second, default 300). Storm grouping is turned
// off so that every probe is pushed on its own.
func TestPushLatency(t *testing.T) {
	if os.Getenv("FIREWATCH_LATENCY") == "" {
		t.Skip("a measurement: set FIREWATCH_LATENCY=1 to run it")
	}
	rate := os.Getenv("FIREWATCH_LATENCY_RATE")
	if rate == "" {
		rate = "300"
	}
	mq := testenv.StartMosquitto(t)
	db := testenv.StartInfluxDB(t)
	bin := buildFirewatch(t)
	dir := t.TempDir()
	firesim := filepath.Join(dir, "firesim")
	if out, err := exec.Command("go", "build", "-o", firesim, "../firesim").CombinedOutput(); err != nil {
		t.Fatalf("build firesim: %v\n%s", err, out)
	}

	rcv := newRaisedTimes(t)

	ledger := filepath.Join(dir, "ledger.yaml")
	if out, err := exec.Command(firesim, "ledger", "-o", ledger, "-devices", "300").CombinedOutput(); err != nil {
		t.Fatalf("firesim ledger: %v\n%s", err, out)
	}
	b, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	b = regexp.MustCompile(`http://127\.0\.0\.1:8090`).ReplaceAll(b, []byte(rcv.URL))
	if err := os.WriteFile(ledger, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var smoke []string
	for _, m := range regexp.MustCompile(`id: (sm-[0-9-]+)`).FindAllSubmatch(b, -1) {
		smoke = append(smoke, string(m[1]))
	}

	fw := newFWProcess(t, bin, ledger, mq, db, dir, "firewatch-latency", "-alarms.storm_window", "0s", "-log.level", "warn")
	t.Cleanup(fw.kill)
	fw.start()

	fleet := exec.Command(firesim, "run", "-broker", mq.URL, "-ledger", ledger, "-rate", rate, "-client-id", "fleet")
	fleet.Stdout, fleet.Stderr = io.Discard, io.Discard
	if err := fleet.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Process.Kill(); fleet.Wait() })
	testenv.WaitFor(t, 30*time.Second, "the fleet's readings arriving", func() bool {
		return scrape(t, fw.api+"/metrics")["firewatch_ingest_readings_total"] > 1000
	})

	pub := newPublisher(t, mq.URL)
	sent := map[string]time.Time{}
	for _, dev := range smoke {
		sent[dev] = time.Now()
		pub.raw("fw/v1/up/"+dev+"/event", fmt.Sprintf(`{"ts":%d,"seq":999999,"event":"smoke_alarm"}`, time.Now().UnixMilli()))
		time.Sleep(50 * time.Millisecond) // pacing the probes, not synchronisation
	}
	testenv.WaitFor(t, 30*time.Second, "every probe's push", func() bool { return rcv.count() >= len(smoke) })
	m := scrape(t, fw.api+"/metrics")
	var lat []time.Duration
	for dev, t0 := range sent {
		lat = append(lat, rcv.since(dev, t0))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	t.Logf("push latency, device publish → webhook received, %d smoke alarms, fleet at %s msg/s (%.0f readings ingested): median %v, p90 %v, p99 %v, max %v",
		len(lat), rate, m["firewatch_ingest_readings_total"], q(0.5), q(0.9), q(0.99), lat[len(lat)-1])
}
