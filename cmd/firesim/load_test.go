package main

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// The load must be accepted whole by firewatch's own decoder, or the bench
// would measure rejections.
func TestLoadPayloadsDecode(t *testing.T) {
	var buf bytes.Buffer
	if err := sim.GenerateLedger(&buf, sim.LedgerOptions{Devices: 400, Gateways: 5, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("ledger.yaml", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	g := newLoadGen(l)
	dec := ingest.NewDecoder(l)
	const ts = 1_795_420_800_000
	readings := 0
	for i := 0; i < 1000; i++ {
		topic, p := g.single(nil, ts+int64(i))
		msgs, rejects := dec.Decode(topic, p, ts+int64(i))
		if len(rejects) > 0 || len(msgs) != 1 {
			t.Fatalf("single %s %s: %v", topic, p, rejects)
		}
		readings++
	}
	for i := 0; i < 50; i++ {
		topic, p, n := g.batch(nil, ts+int64(i), 100)
		msgs, rejects := dec.Decode(topic, p, ts+int64(i))
		if len(rejects) > 0 || len(msgs) != n || n == 0 {
			t.Fatalf("batch %s: %d of %d accepted, %v", topic, len(msgs), n, rejects)
		}
	}
	for i := int64(0); i < 40; i++ {
		topic, p := g.probeMsg(i, ts+i)
		msgs, rejects := dec.Decode(topic, p, ts+i)
		if len(rejects) > 0 || len(msgs) != 1 {
			t.Fatalf("probe %s %s: %v", topic, p, rejects)
		}
		if _, v := dec.Values(&msgs[0]); v[0] != float64(1-i%2) {
			t.Fatalf("probe %d: active %v, want raise on even, clear on odd", i, v[0])
		}
	}
	if len(g.probe) < 2 || g.probe[0].Station == g.probe[1].Station {
		t.Fatalf("probes must be spread over stations: %d probes", len(g.probe))
	}
}

func TestParseSteps(t *testing.T) {
	st, err := parseSteps("single:5000,10000;batch:100000;embedded:2000;outage:20000")
	if err != nil || len(st) != 5 || st[2].shape != "batch" || st[2].rate != 100000 || !st[3].embedded ||
		st[4].shape != "batch" || !st[4].outage || st[4].rate != 20000 || st[2].outage {
		t.Fatalf("%+v %v", st, err)
	}
	for _, bad := range []string{"single", "quantum:5", "single:-1", "single:x"} {
		if _, err := parseSteps(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// After a stall the publisher gives up on the readings it is behind by more
// than 50 ms; the result must count what was sent, not what was due (the
// bench waited minutes for readings never sent, and charged that idle time
// to firewatch).
func TestLoadCountsWhatWasSent(t *testing.T) {
	m := testenv.StartMosquitto(t)
	var buf bytes.Buffer
	if err := sim.GenerateLedger(&buf, sim.LedgerOptions{Devices: 50, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("ledger.yaml", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	stalled := false
	o := loadOptions{broker: m.URL, clientID: "load-test", rate: 2000, duration: time.Second, shape: "single",
		batch: 1, clients: 1, progress: time.Hour,
		stall: func() {
			if !stalled {
				stalled = true
				time.Sleep(300 * time.Millisecond) // the stall under test
			}
		}}
	res, err := runLoad(context.Background(), l, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Readings != res.Messages {
		t.Fatalf("reported %d readings for %d single-reading messages sent", res.Readings, res.Messages)
	}
	if res.Readings > 1900 {
		t.Fatalf("%d readings in 1 s at 2000/s with a 300 ms stall: the stall was made up", res.Readings)
	}
}
