package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestResponderReadingsInBrowser: a residual-current alarm's responder page
// shows the device's last hour as a chart and the nearest hydrants' live
// pressure, both as the devices published them through the broker into a
// real InfluxDB; with InfluxDB gone, the page still shows the alarm and
// its buttons and says the readings are unavailable.
func TestResponderReadingsInBrowser(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	rcv := newReceiver(t)
	ledger := fmt.Sprintf(responderLedger, rcv.URL) +
		`  - {id: el-1, kind: electrical, model: DH-ELEC, grid: "450204101201", address: 山湾村小卖部, lat: 24.2611, lon: 109.3511, unit: 山湾村小卖部, phone: "13800005678"}` + "\n"
	path := filepath.Join(t.TempDir(), "ledger.yaml")
	if err := os.WriteFile(path, []byte(ledger), 0o600); err != nil {
		t.Fatal(err)
	}
	s, c := responderService(t, rcv, func(c *Config) {
		c.Ledger = path
		c.Influx.URL, c.Influx.Bucket = db.URL, db.Bucket
		c.Influx.FlushInterval = 100 * time.Millisecond
	})

	// The last hour of el-1: slowly rising residual current, then above
	// the warning rule's 200 mA for over 30 s; two hydrants report their pressure.
	now := time.Now()
	readings := []struct {
		ago time.Duration
		ma  float64
	}{{50 * time.Minute, 120}, {40 * time.Minute, 150}, {20 * time.Minute, 180.5}, {3 * time.Minute, 260}, {30 * time.Second, 320}, {15 * time.Second, 340}, {0, 350}}
	minutes := map[int64]bool{}
	for i, r := range readings {
		ts := now.Add(-r.ago)
		minutes[ts.Truncate(time.Minute).Unix()] = true
		publish(t, c, "fw/v1/up/el-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":%g}}`, ts.UnixMilli(), i+1, r.ma))
	}
	publish(t, c, "fw/v1/up/hy-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":1,"m":{"pressure_mpa":0.32}}`, now.Add(-2*time.Minute).UnixMilli()))
	publish(t, c, "fw/v1/up/hy-2/telemetry", fmt.Sprintf(`{"ts":%d,"seq":1,"m":{"pressure_mpa":0.285}}`, now.Add(-time.Minute).UnixMilli()))
	p, _ := rcv.nextPush(t, 30*time.Second, "raised push of el-1", func(b map[string]any) bool {
		d, _ := b["device"].(map[string]any)
		return b["transition"] == "raised" && d["id"] == "el-1"
	})
	testenv.WaitFor(t, 30*time.Second, "readings in InfluxDB", func() bool {
		return db.Count(t, "electrical") >= len(readings) && db.Count(t, "hydrant") >= 2
	})

	ctx := newBrowser(t, 2*time.Minute)
	if err := chromedp.Do(ctx,
		phone(s.httpURL(), 24.2611, 109.3511),
		chromedp.Navigate(p["responder_url"].(string)),
		chromedp.WaitVisible(chromedp.CSS(`#name`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), "张三"),
		chromedp.Click(chromedp.CSS(`#name-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#chart-svg`)),
		chromedp.WaitVisible(chromedp.CSS(`#hydrants li[data-id="hy-1"] .pressure[data-mpa]`)),
	); err != nil {
		t.Fatalf("open the link: %v", err)
	}
	points, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('chart-svg').dataset.points`))
	if err != nil {
		t.Fatal(err)
	}
	dots, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#chart-svg circle.pt')].map((c) => c.dataset.v)`))
	if err != nil {
		t.Fatal(err)
	}
	last, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#chart-last`)))
	if err != nil {
		t.Fatal(err)
	}
	threshold, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#chart-svg line.threshold').length`))
	if err != nil {
		t.Fatal(err)
	}
	// One dot per minute that had a reading, the minute's peak; the last
	// is the newest reading.
	if points != fmt.Sprint(len(minutes)) || len(dots) != len(minutes) || dots[0] != "120" || dots[len(dots)-1] != "350" || last != "350 mA" || threshold != 1 {
		t.Errorf("chart: %s points, dots %v, last %q, %d threshold lines; want %d minutes from 120 to 350 mA and the rule's line", points, dots, last, threshold, len(minutes))
	}
	for id, want := range map[string]string{"hy-1": "水压 0.320 MPa", "hy-2": "水压 0.285 MPa"} {
		got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#hydrants li[data-id="`+id+`"] .pressure`)))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("hydrant %s shows %q, want %q", id, got, want)
		}
	}
	screenshot(t, ctx, "responder-phone-chart")

	// InfluxDB gone: the alarm and its buttons, readings unavailable.
	db.Stop()
	if err := chromedp.Do(ctx,
		chromedp.Reload(),
		chromedp.WaitEnabled(chromedp.CSS(`#btn-ack`)),
		chromedp.WaitVisible(chromedp.CSS(`#hydrants li[data-id="hy-1"] .pressure`)),
	); err != nil {
		t.Fatalf("page without InfluxDB: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('chart-note').textContent.includes('暂不可用') &&
		document.querySelector('#hydrants li[data-id="hy-1"] .pressure').textContent === '水压 暂不可用' &&
		!document.getElementById('chart-svg')`)); err != nil {
		note, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#chart-note`)))
		t.Errorf("without InfluxDB the page should say the readings are unavailable: note %q: %v", note, err)
	}
	if n := metric(t, s, "firewatch_responder_readings_failed_total"); n < 1 {
		t.Errorf("readings failures counted: %v", n)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#btn-ack`)), waitState("acknowledged")); err != nil {
		t.Errorf("ack without InfluxDB: %v", err)
	}
}
