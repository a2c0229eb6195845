package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// metric reads one sample of firewatch's /metrics.
func metric(t *testing.T, s *service, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.httpURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// garbage returns the i-th bad payload of the flood: every one must be
// rejected, none may carry a valid reading.
func garbage(r *rand.Rand, i int) []byte {
	switch i % 9 {
	case 0: // random bytes
		b := make([]byte, r.IntN(512))
		for j := range b {
			b[j] = byte(r.UintN(256))
		}
		return b
	case 1:
		return []byte(`{"readings":[{"dev":"el-1","m":{"residual_current_ma":`) // truncated
	case 2:
		return []byte(`{"readings":` + strings.Repeat("[", 200) + `]}`)
	case 3:
		return []byte(`{"readings":[{"dev":"el-1","m":{"residual_current_ma":"NaN"}}]}`)
	case 4:
		return []byte(`{"readings":[{"dev":"ghost-` + strconv.Itoa(i) + `","m":{"x":1}}]}`)
	case 5:
		return []byte(`{"readings":[{"dev":"el-1","m":{"residual_current_ma":1e9}}]}`)
	case 6:
		// A ts far ahead alone no longer rejects a reading (it stands at
		// its receive time, docs/rules.md "Clocks"): a string value keeps
		// this one garbage.
		return []byte(`{"readings":[{"dev":"el-1","ts":99999999999999,"m":{"voltage_v":"220"}}]}`)
	case 7:
		return []byte(`{"readings":[{"dev":"` + strings.Repeat("x", 1000) + `"}]}`)
	default:
		return []byte(`{"x":"` + strings.Repeat("a", ingest.MaxPayload) + `"}`) // too large
	}
}

// TestAbuse floods the real embedded broker with garbage at full speed from
// an authenticated gateway while the normal fleet publishes, and a second
// gateway tries to speak for devices that are not its own: firewatch keeps
// accepting the fleet's readings and raising their alarms, its heap stays
// bounded, and every spoofed reading is rejected.
func TestAbuse(t *testing.T) {
	if testing.Short() {
		t.Skip("abuse test in -short mode")
	}
	rcv := newReceiver(t)
	gw2Hash, err := broker.HashSecret([]byte("gw-2-secret"))
	if err != nil {
		t.Fatal(err)
	}
	s, url, bridgeSecret := embeddedService(t, rcv, func(c *Config) {
		b, err := os.ReadFile(c.Ledger)
		if err != nil {
			t.Fatal(err)
		}
		y := strings.Replace(string(b), "gateways:\n", "gateways:\n  - {id: gw-2, secret_hash: \""+gw2Hash+"\"}\n", 1)
		if err := os.WriteFile(c.Ledger, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// The flood: QoS 0 as fast as the client can write, bounded by count
	// and time.
	start := time.Now()
	flooder := mqttClient(t, url, "gw-1", "gw-1", "gw-1-secret")
	const floodN = 10000
	floodDone := make(chan int)
	go func() {
		r := rand.New(rand.NewPCG(1, 2))
		deadline := time.Now().Add(10 * time.Second)
		n := 0
		for ; n < floodN && time.Now().Before(deadline); n++ {
			topic := "fw/v1/up/gw/gw-1/batch"
			if n%10 == 9 {
				topic = "fw/v1/up/gw/gw-1/status"
			}
			flooder.Publish(topic, 0, false, garbage(r, n))
		}
		tok := flooder.Publish("fw/v1/up/gw/gw-1/status", 1, false, `{"online":true}`)
		tok.WaitTimeout(20 * time.Second)
		floodDone <- n
	}()

	// The spoofer: gw-2 speaks for gw-1's devices, on its own topic (the
	// broker lets it, firewatch rejects every element), then on a device's
	// topic (the broker refuses and disconnects it).
	spoofer := mqttClient(t, url, "gw-2", "gw-2", "gw-2-secret")
	const spoofN = 50
	for i := range spoofN {
		publish(t, spoofer, "fw/v1/up/gw/gw-2/batch", fmt.Sprintf(`{"readings":[{"dev":"hy-1","seq":%d,"event":"tilt"},{"dev":"ch-1","ch":1,"m":{"slot_temp_c":90}}]}`, i))
	}
	spoofer.Publish("fw/v1/up/hy-1/event", 1, false, `{"event":"tilt"}`).WaitTimeout(5 * time.Second)

	// The fleet, meanwhile: the bridge publishes residual current over the
	// alarm level for 11 s of device time and a smoke alarm.
	fleet := mqttClient(t, url, "bridge", "bridge", bridgeSecret)
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	const fleetN = 200
	for i := range fleetN {
		publish(t, fleet, "fw/v1/up/el-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":350}}`, t0+int64(i)*100, i))
	}
	publish(t, fleet, "fw/v1/up/sm-1/event", fmt.Sprintf(`{"ts":%d,"seq":1,"event":"smoke_alarm"}`, t0))
	t.Logf("fleet published after %v", time.Since(start))
	sent := <-floodDone
	t.Logf("flood: %d garbage messages in %v", sent, time.Since(start))

	pushFor := func(rule string) func(map[string]any) bool {
		return func(b map[string]any) bool { return b["rule"] == rule && b["transition"] == "raised" }
	}
	rcv.nextPush(t, 20*time.Second, "residual current alarm", pushFor("electrical.residual_current.alarm"))
	rcv.nextPush(t, 20*time.Second, "fire push", pushFor("smoke.smoke_alarm"))
	// A marker after the flood: once it is in, everything queued before it
	// in the broker has been through the pipeline.
	publish(t, fleet, "fw/v1/up/el-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"voltage_v":220}}`, t0+fleetN*100, fleetN))
	testenv.WaitFor(t, 30*time.Second, "every fleet reading", func() bool {
		return metric(t, s, "firewatch_ingest_readings_total") == fleetN+2
	})
	if n := metric(t, s, `firewatch_ingest_rejected_total{reason="malformed"}`); n == 0 {
		t.Errorf("no malformed rejections counted")
	}
	if n := metric(t, s, `firewatch_ingest_rejected_total{reason="spoofed"}`); n != 2*spoofN {
		t.Errorf("spoofed rejections %v, want %d", n, 2*spoofN)
	}
	if n := metric(t, s, `firewatch_broker_denied_total{reason="publish"}`); n < 1 {
		t.Errorf("the broker did not refuse the spoofer's device topic publish")
	}
	var counts []string
	for _, r := range ingest.Reasons() {
		counts = append(counts, fmt.Sprintf("%s=%v", r, metric(t, s, `firewatch_ingest_rejected_total{reason="`+r.String()+`"}`)))
	}
	t.Logf("rejected: %s; broker denied publishes: %v", strings.Join(counts, " "), metric(t, s, `firewatch_broker_denied_total{reason="publish"}`))
	for _, p := range rcv.all() {
		if dev, _ := p.body["device"].(map[string]any); dev["id"] == "hy-1" || dev["id"] == "ch-1" {
			t.Errorf("alarm from spoofed readings: %v", p.body["rule"])
		}
	}
	runtime.GC()
	runtime.GC() // twice: buffer pools keep their buffers over one cycle
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use before %d MiB, after %d MiB", before.HeapInuse>>20, after.HeapInuse>>20)
	if grown > 32<<20 {
		t.Errorf("heap grew by %d MiB during the flood", grown>>20)
	}
}
