package pipeline

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/bridge"
	"github.com/firewatch-iot/firewatch/rules"
)

// The NB-IoT push endpoints (issue 14), each request through its platform
// handler (token, signature, decode, dedupe), the bridge (ledger binding,
// product codec) and this pipeline (decode, rules, line protocol) to a
// writer that keeps nothing and an alarm manager whose Sync is a no-op:
// firewatch's own cost per push on one goroutine, without the network.
// Every request is a new normal report (its time advances), so none is
// dropped as a retry; the benchmark fails unless every reading arrived.

const nbiotBenchLedger = `
stations:
  - {id: st-1, name: 潭西街道微型消防站, grids: ["450204002"], endpoint: "http://127.0.0.1:1/d"}
devices:
  - {id: sm-ct, kind: smoke, grid: "450204002003", nbiot: {imei: "869975031234568", product: NB-SMOKE-TM}}
  - {id: sm-on, kind: smoke, grid: "450204002003", nbiot: {platform_id: "523456791", product: NB-SMOKE-TM}}
  - {id: sm-gb, kind: smoke, grid: "450204002003", nbiot: {serial: "ABCD01250601SN00000010A1F2E"}}
`

const (
	benchCTWingToken = "ct-0123456789abcdef"
	benchOneNETToken = "fw-onenet-token-2026"
	benchGBToken     = "gb-peer-0123456789"
)

// discardLines is a writer that keeps nothing.
type discardLines struct{}

func (discardLines) Write([]byte) {}

func nbiotBench(b *testing.B) (http.Handler, *ingest.Stats) {
	b.Helper()
	l, err := devices.ParseLedger("bench.yaml", []byte(nbiotBenchLedger))
	if err != nil {
		b.Fatal(err)
	}
	set, err := rules.Defaults()
	if err != nil {
		b.Fatal(err)
	}
	eng, err := rules.NewEngine(set, l)
	if err != nil {
		b.Fatal(err)
	}
	stats := ingest.NewStats(nil, discardLogger())
	p := newPipeline(l, eng, discardLines{}, &fakeEvents{}, stats, prometheus.NewRegistry())
	p.log = discardLogger()
	p.alarms = &fakeAlarms{}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go p.clock.run(ctx) // as the service runs it
	h := Handler(p, "nbiot")
	var cfg bridge.Config
	cfg.Rate = 1 << 30
	cfg.CTWing.Token, cfg.OneNET.Token, cfg.GB45839.Token = benchCTWingToken, benchOneNETToken, benchGBToken
	cfg.CTWing.Tenants, cfg.CTWing.Products = "2000033629", "15298770"
	br, err := bridge.New(cfg, bridge.Options{Ledger: l, Handle: func(topic string, payload []byte) error { h(topic, payload); return nil }})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	if err := br.Mount(mux); err != nil {
		b.Fatal(err)
	}
	return mux, stats
}

func BenchmarkNBIoTEndpoint(b *testing.B) {
	cst := time.FixedZone("CST", 8*3600)
	for _, c := range []struct {
		name, path string
		body       func(buf []byte, n int, t0 time.Time) []byte
	}{
		{"ctwing", "/nbiot/ctwing/" + benchCTWingToken, func(buf []byte, n int, t0 time.Time) []byte {
			buf = append(buf, `{"upPacketSN":"","upDataSN":-1,"topic":"v1/up/ad19","timestamp":`...)
			buf = strconv.AppendInt(buf, t0.UnixMilli()+int64(n), 10)
			return append(buf, `,"tenantId":"2000033629","serviceId":1,"protocol":"lwm2m","productId":"15298770","messageType":"dataReport",`+
				`"deviceType":"","deviceId":"15298770869975031234568","assocAssetId":"","IMEI":"869975031234568","IMSI":"undefined",`+
				`"payload":{"serviceId":"notification","serviceData":{"Alarm_Status":0,"Battery_Level":87,"RSRP":-95,"SNR":6}}}`...)
		}},
		{"onenet", "/nbiot/onenet", func(buf []byte, n int, t0 time.Time) []byte {
			msg := `{"type":1,"dev_id":523456791,"ds_id":"Alarm_Status","at":` + strconv.FormatInt(t0.UnixMilli()+int64(n), 10) + `,"value":0}`
			sum := md5.Sum([]byte(benchOneNETToken + "n0nce8Xy" + msg))
			buf = append(buf, `{"id":"7a1c","time":1796118000100,"msg":`...)
			buf = strconv.AppendQuote(buf, msg)
			buf = append(buf, `,"signature":"`...)
			buf = base64.StdEncoding.AppendEncode(buf, sum[:])
			return append(buf, `","nonce":"n0nce8Xy"}`...)
		}},
		{"gb45839", "/nbiot/gb45839/" + benchGBToken + "/status_info", func(buf []byte, n int, t0 time.Time) []byte {
			buf = append(buf, `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":1,"signalStrength":-99,"batteryPercentage":76,"datetime":"`...)
			buf = t0.Add(time.Duration(n)*time.Second).In(cst).AppendFormat(buf, "2006-01-02 15:04:05")
			return append(buf, `"}`...)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			mux, stats := nbiotBench(b)
			t0 := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
			buf := make([]byte, 0, 1024)
			n := 0
			before, readings := testutil.ToFloat64(stats.Messages), testutil.ToFloat64(stats.Readings)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				n++
				buf = c.body(buf[:0], n, t0)
				req := httptest.NewRequest(http.MethodPost, c.path, bytes.NewReader(buf))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("request %d: %d %s", n, w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
			if got := testutil.ToFloat64(stats.Messages) - before; got < float64(n) {
				b.Fatalf("%v pipeline messages of %d requests", got, n)
			}
			if got := testutil.ToFloat64(stats.Readings) - readings; got < float64(n) {
				b.Fatalf("%v readings accepted of %d requests", got, n)
			}
		})
	}
}
