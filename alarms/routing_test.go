package alarms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

const routingLedger = `
places:
  "450204": 柳州市柳南区
  "450204001": 潭西街道
  "450204001001": 某村
stations:
  - id: st-county
    name: 柳南区消防救援站
    grids: ["450204"]
    endpoint: %[1]s/county
  - id: st-village
    name: 某村微型消防站
    grids: ["450204001001"]
    endpoint: %[1]s/village
  - id: st-town
    name: 潭西街道微型消防站
    grids: ["450204001"]
    endpoint: %[1]s/town
devices:
  - id: el-1
    kind: electrical
    model: M
    grid: "450204001001"
  - id: el-2
    kind: electrical
    model: M
    grid: "450204001002"
`

// TestRouting: the covering station first, then up the grid hierarchy,
// skipping stations that are not ready and saying so.
func TestRouting(t *testing.T) {
	rc := newReceiver(t)
	l, err := devices.ParseLedger("routing.yaml", fmt.Appendf(nil, routingLedger, rc.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if got := stationIDs(candidates(l, l.Device(0))); got != "st-village st-town st-county" {
		t.Errorf("candidates of el-1: %s", got)
	}
	if got := stationIDs(candidates(l, l.Device(1))); got != "st-town st-county" {
		t.Errorf("candidates of el-2: %s", got)
	}
	r := newTestRules(t)
	m := start(t, testConfig(t), l)
	ctx := context.Background()
	status := func(st, body string) {
		t.Helper()
		if _, err := m.SetStationStatus(ctx, st, []byte(body), "test"); err != nil {
			t.Fatal(err)
		}
	}
	ch := uint8(0)
	raiseOn := func() Alarm {
		t.Helper()
		ch++
		m.Submit(raise(r.cableTemp, 0, ch, 75, 12_000))
		m.Sync()
		return list(t, m.Manager, Filter{Limit: 1})[0]
	}
	tests := []struct {
		name, station, path, note string
		before                    func()
	}{
		{name: "never reported: ready", station: "st-village", path: "/village"},
		{name: "on duty", before: func() { status("st-village", `{"duty":"on_duty","people":3}`) }, station: "st-village", path: "/village"},
		{name: "village busy → town", before: func() { status("st-village", `{"duty":"busy"}`) },
			station: "st-town", path: "/town", note: "某村微型消防站（出警中），改派潭西街道微型消防站。"},
		{name: "town off duty too → county", before: func() { status("st-town", `{"duty":"off_duty"}`) },
			station: "st-county", path: "/county", note: "某村微型消防站（出警中），潭西街道微型消防站（离岗），改派柳南区消防救援站。"},
		{name: "nobody ready → still the covering station", before: func() { status("st-county", `{"duty":"on_duty","people":0}`) },
			station: "st-village", path: "/village", note: "均未就绪，仍推送某村微型消防站。"},
	}
	for _, tt := range tests {
		if tt.before != nil {
			tt.before()
		}
		a := raiseOn()
		got := rc.next(t)
		if a.Station != tt.station || !strings.Contains(a.RouteNote, tt.note) || (tt.note == "" && a.RouteNote != "") {
			t.Errorf("%s: routed to %s, note %q; want %s, %q", tt.name, a.Station, a.RouteNote, tt.station, tt.note)
		}
		if got.push.Station.ID != tt.station ||
			got.push.RouteNote != a.RouteNote || !strings.HasSuffix(got.push.Message, a.RouteNote) {
			t.Errorf("%s: push station %s note %q message %q", tt.name, got.push.Station.ID, got.push.RouteNote, got.push.Message)
		}
	}

	for _, bad := range []string{`{"duty":"asleep"}`, `{"duty":"on_duty"}`, `{"duty":"busy","people":-1}`, `{"duty":"busy","x":1}`, `nope`} {
		if _, err := m.SetStationStatus(ctx, "st-town", []byte(bad), "test"); !errors.Is(err, ErrBadStatus) {
			t.Errorf("status %s: %v, want ErrBadStatus", bad, err)
		}
	}
	if _, err := m.SetStationStatus(ctx, "st-nowhere", []byte(`{"duty":"busy"}`), "test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown station: %v", err)
	}

	// Through the API.
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/api/v1/stations/st-town/status", strings.NewReader(`{"duty":"on_duty","people":5}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous PUT status: %d, want 401", resp.StatusCode)
	}
	ss, err := m.StationStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 3 || ss[1].Station != "st-village" || ss[1].Duty != DutyBusy || ss[1].Ready || ss[1].By != "test" {
		t.Errorf("statuses %+v", ss)
	}
}

func stationIDs(ss []*devices.Station) string {
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	return strings.Join(ids, " ")
}
