package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestInfluxOutage stops a real InfluxDB for 20 s while gateway batches
// arrive through a real Mosquitto at 2,000 readings/s, with smoke alarms
// published during the outage. Every reading accepted must be in InfluxDB
// afterwards (held in the on-disk spool meanwhile, the memory queue being
// kept tiny), and every alarm must reach the dispatch receiver within 3 s
// of its publish (GB 50440's bound for forwarding a confirmed fire alarm),
// however long InfluxDB is away.
func TestInfluxOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s of load: skipped with -short")
	}
	const (
		hydrants = 200
		probes   = 10
		perBatch = 100
		every    = 50 * time.Millisecond // 2,000 readings/s
		before   = 3 * time.Second
		outage   = 20 * time.Second
		after    = 3 * time.Second
		onTime   = 3 * time.Second
	)
	mq := testenv.StartMosquitto(t)
	db := testenv.StartInfluxDB(t)

	rcv := newRaisedTimes(t)

	var l strings.Builder
	fmt.Fprintf(&l, "places:\n  \"450204\": 柳州市柳南区\n  \"450204002\": 潭西街道\nstations:\n"+
		"  - id: st-o\n    name: 潭西街道微型消防站\n    grids: [\"450204002\"]\n    endpoint: %s/st-o\ndevices:\n", rcv.URL)
	for i := range hydrants {
		fmt.Fprintf(&l, "  - id: hy-o-%03d\n    gateway: gw-o\n    kind: hydrant\n    model: PT-100\n    grid: \"450204002001\"\n    address: 鹅山路%d号\n", i, i)
	}
	for i := range probes {
		fmt.Fprintf(&l, "  - id: sm-o-%02d\n    kind: smoke\n    model: JTY-GD-NB\n    grid: \"450204002001\"\n    address: 鹅山小区%d栋\n", i, i)
	}
	dir := t.TempDir()
	cfg := defaults()
	cfg.Ledger = filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(cfg.Ledger, []byte(l.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.Broker = mq.URL
	cfg.MQTT.ClientID = "firewatch-outage"
	cfg.Influx.URL = db.URL
	cfg.Influx.Bucket = db.Bucket
	cfg.Influx.BatchLines = 500
	cfg.Influx.FlushInterval = 200 * time.Millisecond
	// Two seconds of readings fit in memory: the outage has to go to disk.
	cfg.Influx.MaxPending = 4
	cfg.Alarms.DB = filepath.Join(dir, "alarms.db") // the spool goes beside it
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.StormWindow = 0 // every probe pushed on its own
	cfg.HTTP.Listen = "127.0.0.1:0"
	s, _ := runService(t, &cfg, slog.LevelWarn)
	api := s.httpURL()

	pub := newPublisher(t, mq.URL)
	seq := 0
	sent := 0
	var last int64
	batch := func() {
		seq++
		// Every batch gets a millisecond of its own, even when a stalled
		// ticker lets two batches out at once: InfluxDB keeps one point per
		// series and time, so a repeat time would overwrite, not add.
		now := max(time.Now().UnixMilli(), last+1)
		last = now
		var b strings.Builder
		b.WriteString(`{"readings":[`)
		for k := range perBatch {
			if k > 0 {
				b.WriteByte(',')
			}
			// Each hydrant reports every other batch.
			dev := (seq%2)*perBatch + k
			fmt.Fprintf(&b, `{"dev":"hy-o-%03d","ts":%d,"seq":%d,"m":{"pressure_mpa":0.3%d}}`, dev, now, seq, k%10)
		}
		b.WriteString(`]}`)
		pub.raw("fw/v1/up/gw/gw-o/batch", b.String())
		sent += perBatch
	}
	load := func(d time.Duration, each func(i int)) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := range int(d / every) {
			<-tick.C
			batch()
			if each != nil {
				each(i)
			}
		}
	}

	load(before, nil)
	testenv.WaitFor(t, 20*time.Second, "readings stored before the outage", func() bool {
		return scrape(t, api+"/metrics")["firewatch_influx_lines_written_total"] > 0
	})
	db.Stop()
	published := map[string]time.Time{}
	perProbe := int(outage/every) / probes
	load(outage, func(i int) {
		if i%perProbe != perProbe/2 {
			return
		}
		dev := fmt.Sprintf("sm-o-%02d", i/perProbe)
		published[dev] = time.Now()
		pub.raw("fw/v1/up/"+dev+"/event", fmt.Sprintf(`{"ts":%d,"seq":1,"event":"smoke_alarm"}`, time.Now().UnixMilli()))
	})
	m := scrape(t, api+"/metrics")
	if m["firewatch_influx_spooled_lines_total"] == 0 {
		t.Errorf("nothing was spooled during a %v outage with room for 2 s in memory", outage)
	}
	if m["firewatch_influx_write_errors_total"] == 0 {
		t.Errorf("no failed write while InfluxDB was stopped: the outage did not happen")
	}
	db.Start()
	load(after, nil)

	// The publisher's PUBACK comes from Mosquitto: wait until firewatch has
	// taken every message before flushing its writer.
	testenv.WaitFor(t, 20*time.Second, "every reading accepted", func() bool {
		return int(scrape(t, api+"/metrics")["firewatch_ingest_readings_total"]) >= sent+probes
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.writer.Flush(ctx); err != nil {
		t.Fatalf("flush after the outage: %v", err)
	}
	m = scrape(t, api+"/metrics")
	if got := m["firewatch_ingest_readings_total"]; int(got) != sent+probes {
		t.Errorf("accepted %v readings, published %d and %d smoke events", got, sent, probes)
	}
	if got := db.Count(t, "hydrant"); got != sent {
		t.Errorf("InfluxDB holds %d hydrant readings, %d were published and accepted", got, sent)
	}
	for k, v := range m {
		if strings.HasPrefix(k, "firewatch_influx_dropped_lines_total") && v != 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	t.Logf("%d readings, %v spooled and %v replayed", sent,
		m["firewatch_influx_spooled_lines_total"], m["firewatch_influx_replayed_lines_total"])

	testenv.WaitFor(t, 10*time.Second, "every probe's push", func() bool { return rcv.count() >= len(published) })
	var lat []time.Duration
	for dev, t0 := range published {
		d := rcv.since(dev, t0)
		lat = append(lat, d)
		if d > onTime {
			t.Errorf("%s: alarm pushed %v after its publish during the outage, want ≤ %v", dev, d, onTime)
		}
	}
	slices.Sort(lat)
	if len(lat) != probes {
		t.Fatalf("%d probes published, want %d", len(lat), probes)
	}
	t.Logf("alarm publish → push during the outage: median %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
}
