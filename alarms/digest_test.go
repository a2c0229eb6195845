package alarms

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

func TestDigestPeriod(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, cst)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		schedule, now, from, to, key string
	}{
		{DigestDaily, "2026-11-30 09:00", "2026-11-29 00:00", "2026-11-30 00:00", "daily:2026-11-29"},
		{DigestDaily, "2026-11-30 07:59", "2026-11-28 00:00", "2026-11-29 00:00", "daily:2026-11-28"},
		{DigestWeekly, "2026-11-30 08:00", "2026-11-23 00:00", "2026-11-30 00:00", "weekly:2026-11-23"}, // a Monday
		{DigestWeekly, "2026-11-29 20:00", "2026-11-16 00:00", "2026-11-23 00:00", "weekly:2026-11-16"}, // a Sunday
		{DigestMonthly, "2026-12-01 09:00", "2026-11-01 00:00", "2026-12-01 00:00", "monthly:2026-11-01"},
		{DigestMonthly, "2026-12-01 07:00", "2026-10-01 00:00", "2026-11-01 00:00", "monthly:2026-10-01"},
		{DigestMonthly, "2027-01-15 12:00", "2026-12-01 00:00", "2027-01-01 00:00", "monthly:2026-12-01"},
	} {
		from, to, key, ok := digestPeriod(c.schedule, at(c.now).UTC(), 8*time.Hour)
		if !ok || !from.Equal(at(c.from)) || !to.Equal(at(c.to)) || key != c.key {
			t.Errorf("%s at %s: %v – %v %q %v, want %s – %s %q", c.schedule, c.now, from.In(cst), to.In(cst), key, ok,
				c.from, c.to, c.key)
		}
	}
	if _, _, _, ok := digestPeriod(DigestOff, time.Now(), 0); ok {
		t.Error("off has a period")
	}
}

// TestDigests: the daily digest reaches the town's WeCom group and the
// county's DingTalk group (not the village's), retried after the robots
// refuse the first attempt, with what happened in each grid; it is sent
// once, also across a restart.
func TestDigests(t *testing.T) {
	rc := newReceiver(t)
	town, county, village := newDigestRobot(t), newDigestRobot(t), newDigestRobot(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	offline := &rules.Rule{ID: "charger.offline", Kind: devices.KindCharger,
		Metric: metric(t, devices.KindCharger, "slot_temp_c"), Op: rules.OpEvent, Severity: rules.SeverityOffline}
	cfg := testConfig(t)
	cfg.Digest = DigestDaily
	cfg.DigestCheck = time.Hour // the test calls SendDueDigests itself
	var err error
	cfg.Robots, err = ParseRobots("450204001=wecom:" + town.url + "/send?key=k," +
		"450204=dingtalk:" + county.url + "/send?access_token=t," +
		"450204001001=wecom:" + village.url + "/send?key=v")
	if err != nil {
		t.Fatal(err)
	}
	m := start(t, cfg, l)
	ctx := context.Background()
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
	m.Submit(raise(r.residual, devElectrical, 0, 356, 11_000))
	m.Submit(raise(offline, devCharger, 0, 1, 0))
	m.Submit(raise(r.pressure, devHydrant, 0, 0.05, 61_000)) // the other town
	poll(t, "four alarms pushed", func() bool {
		n := 0
		for _, a := range list(t, m.Manager, Filter{}) {
			if a.State == StatePushed {
				n++
			}
		}
		return n == 4
	})
	smoke := list(t, m.Manager, Filter{Device: "sm-450204-0002"})[0].ID
	for _, to := range []State{StateAcknowledged, StateFalseAlarm} {
		if _, err := m.Transition(ctx, smoke, to, "duty", ""); err != nil {
			t.Fatal(err)
		}
	}

	// A day from now, 08:00 CST or later: today's alarms are due.
	now := time.Now().In(cst)
	due := time.Date(now.Year(), now.Month(), now.Day()+1, 9, 0, 0, 0, cst)
	day := now.Format("2006-01-02")
	town.refuse.Store(true)
	n, err := m.SendDueDigests(ctx, due)
	if n != 1 || err == nil {
		t.Fatalf("first round: %d sent, err %v; want the county's sent and the town's refused (errcode)", n, err)
	}
	town.refuse.Store(false)
	if n, err = m.SendDueDigests(ctx, due); n != 1 || err != nil {
		t.Fatalf("second round: %d sent, err %v; want the town's", n, err)
	}
	if n, err = m.SendDueDigests(ctx, due.Add(time.Hour)); n != 0 || err != nil {
		t.Fatalf("third round: %d sent, err %v; want none (already sent)", n, err)
	}

	content := town.only(t, day)["markdown"].(map[string]any)["content"].(string)
	t.Logf("town digest:\n%s", content)
	for _, want := range []string{
		"### 消防预警提示（日报）· 潭西街道\n",
		"**告警**：共 3 起（火警 1、报警 1、离线 1），其中误报 1 起",
		"**当前未处置告警**：1 起",
		"el-450204-0001（和平路12号）",
		"**离线设备**：1 台\n- ch-450204-0004（和平路16号车棚）",
		"- sm-450204-0002（和平路14号）误报 1/1 起，100%",
		"- 确认：1 起，中位",
		"- 到场：本期无记录",
	} {
		if !strings.Contains(content, want) {
			t.Errorf("town digest lacks %q:\n%s", want, content)
		}
	}
	if strings.Contains(content, "hy-450204-0003") {
		t.Errorf("town digest names the other town's hydrant:\n%s", content)
	}
	text := county.only(t, day)["markdown"].(map[string]any)["text"].(string)
	if !strings.Contains(text, "共 4 起") || !strings.Contains(text, "hy-450204-0003") {
		t.Errorf("county digest:\n%s", text)
	}
	if len(town.digests()) > 2 || len(county.digests()) > 2 {
		t.Errorf("robots got %d and %d digests: today's and yesterday's at most", len(town.digests()), len(county.digests()))
	}
	if n := len(village.digests()); n != 0 {
		t.Errorf("the village robot got %d digests", n)
	}

	// The API serves the same digest for any grid and period.
	api := httptest.NewServer(m.Handler())
	defer api.Close()
	since := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, cst)
	q := "grid=450204001&since=" + since.Format(time.RFC3339) + "&until=" + since.AddDate(0, 0, 1).Format(time.RFC3339)
	resp, err := http.Get(api.URL + "/api/v1/digest?" + strings.ReplaceAll(q, "+", "%2B"))
	if err != nil {
		t.Fatal(err)
	}
	var served struct {
		Digest
		Title, Text string
	}
	err = json.NewDecoder(resp.Body).Decode(&served)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || served.Alarms != 3 || served.FalseAlarms != 1 || served.OfflineCount != 1 ||
		served.Title != "消防预警提示（统计）· 潭西街道" || !strings.Contains(content, served.Text) {
		t.Errorf("GET /api/v1/digest: %s %v %+v", resp.Status, err, served)
	}
	for _, bad := range []string{"since=" + since.Format("2006-01-02"), "grid=450204001", "grid=450204001&schedule=off"} {
		resp, err := http.Get(api.URL + "/api/v1/digest?" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /api/v1/digest?%s: %s, want 400", bad, resp.Status)
		}
	}

	// A restart does not send it again.
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	m2 := start(t, cfg, l)
	if n, err := m2.SendDueDigests(ctx, due); n != 0 || err != nil {
		t.Fatalf("after a restart: %d sent, err %v; want none", n, err)
	}
}

// digestRobot is a group robot that answers like WeCom and DingTalk, with
// errcode 45009 while refuse is set, and keeps the digests it accepted
// (the alarm pushes it also gets are ignored).
type digestRobot struct {
	url    string
	refuse atomic.Bool
	mu     sync.Mutex
	got    []map[string]any
}

func newDigestRobot(t *testing.T) *digestRobot {
	d := &digestRobot{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("robot message is not JSON: %v", err)
		}
		if d.refuse.Load() {
			w.Write([]byte(`{"errcode":45009,"errmsg":"api freq out of limit"}`))
			return
		}
		if md, _ := body["markdown"].(map[string]any); md != nil {
			text, _ := md["content"].(string)
			if text == "" {
				text, _ = md["text"].(string)
			}
			if strings.HasPrefix(text, "### 消防预警提示") {
				d.mu.Lock()
				d.got = append(d.got, body)
				d.mu.Unlock()
			}
		}
		w.Write([]byte(`{"errcode":0,"errmsg":"ok"}`))
	}))
	t.Cleanup(srv.Close)
	d.url = srv.URL
	return d
}

func (d *digestRobot) digests() []map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]map[string]any(nil), d.got...)
}

// only returns the one digest the robot got for the period from day
// (2006-01-02); the manager also sends yesterday's when it starts.
func (d *digestRobot) only(t *testing.T, day string) map[string]any {
	t.Helper()
	var out []map[string]any
	for _, b := range d.digests() {
		if js, _ := json.Marshal(b); strings.Contains(string(js), "统计周期："+day+" 00:00") {
			out = append(out, b)
		}
	}
	if len(out) != 1 {
		t.Fatalf("robot got %d digests for %s, want 1", len(out), day)
	}
	return out[0]
}
