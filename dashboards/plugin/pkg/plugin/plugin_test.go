package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// wait bounds every wait in these tests; it is never reached when all is
// well.
const wait = 20 * time.Second

const (
	viewerSecret   = "grafana-viewer-secret-0001"
	operatorSecret = "duty-officer-secret-00002"
)

const ledgerYAML = `
places:
  "450204": 柳州市柳南区
  "450204001": 潭西街道
  "450204001001": 某村
  "450204002001": 另一村
stations:
  - id: st-tanxi
    name: 潭西街道微型消防站
    grids: ["450204001"]
    endpoint: %[1]s
  - id: st-other
    name: 另一微型消防站
    grids: ["450204002"]
    endpoint: %[1]s
devices:
  - id: el-0001
    kind: electrical
    model: ARCM300
    grid: "450204001001"
    address: 和平路12号
    lat: 24.301
    lon: 109.392
  - id: sm-0002
    kind: smoke
    model: JTY-GD-H361
    grid: "450204001001"
    address: 和平路14号
  - id: hy-0003
    kind: hydrant
    model: HP-01
    grid: "450204002001"
    address: 建设路1号
  - id: ch-0004
    kind: charger
    model: CC-10
    grid: "450204001001"
    address: 和平路16号车棚
`

// firewatch is the alarm API of the alarms package, served in process
// with a real SQLite store, exactly as cmd/firewatch mounts it on
// /api/v1/. /healthz and /api/v1/devices live in cmd/firewatch (package
// main, not importable): here they are stand-ins with the same JSON shape
// (docs/api.md, cmd/firewatch/devices_api.go); TestAgainstFirewatchProcess
// checks the plugin against the real ones.
type firewatch struct {
	t       *testing.T
	m       *alarms.Manager
	ledger  *devices.Ledger
	srv     *httptest.Server
	offline map[string]bool // device id → offline, for the devices stand-in
	// alarmLists counts GET /api/v1/alarms requests; listed is signalled on
	// each.
	alarmLists atomic.Int64
	listed     chan struct{}
	rules      struct{ residual, smoke, pressure, slotTemp *rules.Rule }
}

func startFirewatch(t *testing.T) *firewatch {
	t.Helper()
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(receiver.Close)
	l, err := devices.ParseLedger("test.yaml", fmt.Appendf(nil, ledgerYAML, receiver.URL))
	if err != nil {
		t.Fatal(err)
	}
	cfg := alarms.Config{
		DBPath:   filepath.Join(t.TempDir(), "alarms.db"),
		Secret:   []byte("plugin-test-secret"),
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, PushTimeout: 5 * time.Second,
		Logger:      slog.New(slog.DiscardHandler),
		StormWindow: -1,
		Tokens: []alarms.Token{
			{Name: "grafana", Role: alarms.RoleViewer, Secret: viewerSecret},
			{Name: "zhang-san", Role: alarms.RoleOperator, Secret: operatorSecret},
		},
	}
	m, err := alarms.NewManager(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("alarm manager: %v", err)
		}
		m.Close()
	})
	fw := &firewatch{t: t, m: m, ledger: l, offline: map[string]bool{}, listed: make(chan struct{}, 1000)}
	metric := func(k devices.Kind, name string) devices.Metric {
		mt, ok := devices.MetricByName(k, name)
		if !ok {
			t.Fatalf("no metric %s", name)
		}
		return mt
	}
	fw.rules.residual = &rules.Rule{ID: "elec-residual-alarm", Kind: devices.KindElectrical,
		Metric: metric(devices.KindElectrical, "residual_current_ma"), Op: rules.OpAbove,
		Severity: rules.SeverityAlarm, Threshold: 300, Clear: 250, For: 10 * time.Second}
	fw.rules.smoke = &rules.Rule{ID: "smoke-fire", Kind: devices.KindSmoke,
		Metric: metric(devices.KindSmoke, "smoke_alarm"), Op: rules.OpEvent, Severity: rules.SeverityFire}
	fw.rules.pressure = &rules.Rule{ID: "hydrant-pressure-low", Kind: devices.KindHydrant,
		Metric: metric(devices.KindHydrant, "pressure_mpa"), Op: rules.OpBelow,
		Severity: rules.SeverityWarning, Threshold: 0.14, Clear: 0.16, For: time.Minute}
	fw.rules.slotTemp = &rules.Rule{ID: "charger-slot-temp-alarm", Kind: devices.KindCharger,
		Metric: metric(devices.KindCharger, "slot_temp_c"), Op: rules.OpAbove,
		Severity: rules.SeverityAlarm, Threshold: 65, Action: "cut_power"}

	api := m.Handler()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"ok","devices":%d,"rules":4,"version":"test-1"}`+"\n", len(l.Devices))
	})
	mux.HandleFunc("GET /api/v1/devices", func(w http.ResponseWriter, r *http.Request) {
		grid, offlineOnly := r.URL.Query().Get("grid"), r.URL.Query().Get("offline") == "true"
		out := []map[string]any{}
		for i := range l.Devices {
			d := &l.Devices[i]
			if !d.Grid.Within(grid) || (offlineOnly && !fw.offline[d.ID]) {
				continue
			}
			dv := map[string]any{"id": d.ID, "kind": d.Kind.String(), "grid": string(d.Grid), "online": !fw.offline[d.ID],
				"grace_s": 600, "battery_pct": 87.5, "some_future_field": []int{1}}
			if d.Lat != 0 {
				dv["lat"], dv["lon"] = d.Lat, d.Lon
			}
			out = append(out, dv)
		}
		json.NewEncoder(w).Encode(map[string]any{"devices": out, "offline_total": len(fw.offline)})
	})
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r)
		if r.Method == http.MethodGet && r.URL.Path == "/api/v1/alarms" {
			fw.alarmLists.Add(1)
			select {
			case fw.listed <- struct{}{}:
			default:
			}
		}
	})
	fw.srv = httptest.NewServer(mux)
	t.Cleanup(fw.srv.Close)
	return fw
}

// raise stores an alarm of rule r on device id and returns its alarm id.
func (fw *firewatch) raise(r *rules.Rule, id string, value float64) string {
	fw.t.Helper()
	d, ok := fw.ledger.LookupID(id)
	if !ok {
		fw.t.Fatalf("no device %s", id)
	}
	now := time.Now().UnixMilli()
	fw.m.Submit(rules.Event{Rule: r, Device: d.Index, Transition: rules.Raise, Value: value,
		Since: now - 11_000, Time: now, Seq: 1})
	fw.m.Sync()
	as, err := fw.m.List(context.Background(), alarms.Filter{Device: id, State: alarms.FilterOpen})
	if err != nil || len(as) == 0 {
		fw.t.Fatalf("alarm of %s not stored: %v", id, err)
	}
	return as[0].ID
}

func (fw *firewatch) move(id string, to ...alarms.State) {
	fw.t.Helper()
	for _, s := range to {
		if _, err := fw.m.Transition(context.Background(), id, s, "zhang-san", "测试"); err != nil {
			fw.t.Fatalf("%s → %s: %v", id, s, err)
		}
	}
}

func newDS(t *testing.T, url, token string) *Datasource {
	t.Helper()
	ds, err := NewDatasource(context.Background(), backend.DataSourceInstanceSettings{
		UID: "firewatch-api", JSONData: json.RawMessage(fmt.Sprintf(`{"url":%q,"pollSeconds":1}`, url)),
		DecryptedSecureJSONData: map[string]string{"token": token},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ds.(*Datasource)
}

// run sends one query and returns its only frame.
func run(t *testing.T, ds *Datasource, q map[string]any) *data.Frame {
	t.Helper()
	b, _ := json.Marshal(q)
	qt, _ := q["queryType"].(string)
	now := time.Now()
	resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{
		PluginContext: backend.PluginContext{DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{UID: "firewatch-api"}},
		Queries: []backend.DataQuery{{RefID: "A", QueryType: qt, JSON: b,
			TimeRange: backend.TimeRange{From: now.Add(-time.Hour), To: now.Add(time.Hour)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Responses["A"]
	if r.Error != nil {
		t.Fatalf("query %s: %v", b, r.Error)
	}
	if len(r.Frames) != 1 {
		t.Fatalf("query %s: %d frames", b, len(r.Frames))
	}
	return r.Frames[0]
}

// column returns a frame's field values as strings, by name.
func column(t *testing.T, f *data.Frame, name string) []string {
	t.Helper()
	field, i := f.FieldByName(name)
	if i < 0 {
		t.Fatalf("frame %s has no field %s", f.Name, name)
	}
	out := make([]string, field.Len())
	for j := range out {
		v, ok := field.ConcreteAt(j)
		if !ok {
			out[j] = "<nil>"
			continue
		}
		out[j] = fmt.Sprint(v)
	}
	return out
}

func TestQueryAlarms(t *testing.T) {
	fw := startFirewatch(t)
	fire := fw.raise(fw.rules.smoke, "sm-0002", 1)
	alarm := fw.raise(fw.rules.residual, "el-0001", 356)
	warning := fw.raise(fw.rules.pressure, "hy-0003", 0.12)
	fw.move(alarm, alarms.StateAcknowledged, alarms.StateResolved)
	ds := newDS(t, fw.srv.URL, viewerSecret)

	for _, tc := range []struct {
		name string
		q    map[string]any
		want []string
	}{
		{"all", map[string]any{"queryType": "alarms", "state": "all", "severity": "$__all"}, []string{warning, alarm, fire}},
		{"open", map[string]any{"queryType": "alarms", "state": "open"}, []string{warning, fire}},
		{"closed", map[string]any{"queryType": "alarms", "state": "closed"}, []string{alarm}},
		{"fire", map[string]any{"queryType": "alarms", "severity": "fire"}, []string{fire}},
		{"town prefix", map[string]any{"queryType": "alarms", "grid": "450204001"}, []string{alarm, fire}},
		{"other town", map[string]any{"queryType": "alarms", "grid": "450204002", "state": "open"}, []string{warning}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := run(t, ds, tc.q)
			got := column(t, f, "id")
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("ids %v, want %v", got, tc.want)
			}
		})
	}
	f := run(t, ds, map[string]any{"queryType": "alarms", "severity": "fire"})
	if s := column(t, f, "station"); s[0] != "st-tanxi" {
		t.Errorf("station %v", s)
	}
	if o := column(t, f, "open"); o[0] != "true" {
		t.Errorf("open %v", o)
	}

	// A time range before the alarms selects none.
	b, _ := json.Marshal(map[string]any{"queryType": "alarms"})
	resp, _ := ds.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "A", JSON: b,
		TimeRange: backend.TimeRange{From: time.Now().Add(-48 * time.Hour), To: time.Now().Add(-24 * time.Hour)}}}})
	if r := resp.Responses["A"]; r.Error != nil || r.Frames[0].Rows() != 0 {
		t.Errorf("old time range: %v, %d rows", r.Error, r.Frames[0].Rows())
	}
	// Bad filters are the user's error, reported per query.
	b, _ = json.Marshal(map[string]any{"queryType": "alarms", "grid": "4502x"})
	resp, _ = ds.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "B", JSON: b}}})
	if r := resp.Responses["B"]; r.Error == nil || r.Status != backend.StatusBadRequest {
		t.Errorf("bad grid: %v %v", r.Error, r.Status)
	}

	// Open by severity.
	f = run(t, ds, map[string]any{"queryType": "open_by_severity"})
	for sev, want := range map[string]string{"fire": "1", "alarm": "0", "warning": "1", "fault": "0", "offline": "0"} {
		if got := column(t, f, sev); got[0] != want {
			t.Errorf("open %s = %v, want %s", sev, got, want)
		}
	}
}

func TestQueryDevicesAndGrid(t *testing.T) {
	fw := startFirewatch(t)
	fw.raise(fw.rules.smoke, "sm-0002", 1)
	fw.raise(fw.rules.pressure, "hy-0003", 0.12)
	fw.offline["ch-0004"] = true
	ds := newDS(t, fw.srv.URL, viewerSecret)

	f := run(t, ds, map[string]any{"queryType": "devices"})
	if got := fmt.Sprint(column(t, f, "id"), column(t, f, "state"), column(t, f, "state_rank")); got !=
		"[el-0001 sm-0002 hy-0003 ch-0004] [normal fire warning offline] [0 5 3 1]" {
		t.Errorf("devices %s", got)
	}
	if lat := column(t, f, "lat"); lat[0] != "24.301" || lat[1] != "<nil>" {
		t.Errorf("lat %v", lat)
	}
	f = run(t, ds, map[string]any{"queryType": "devices", "offline": true})
	if got := column(t, f, "id"); fmt.Sprint(got) != "[ch-0004]" {
		t.Errorf("offline devices %v", got)
	}

	f = run(t, ds, map[string]any{"queryType": "grid", "level": "village"})
	if got := fmt.Sprint(column(t, f, "grid"), column(t, f, "risk"), column(t, f, "fire"), column(t, f, "offline_ratio")); got !=
		"[450204001001 450204002001] [red yellow] [1 0] [0.3333333333333333 0]" {
		t.Errorf("grid %s", got)
	}
	f = run(t, ds, map[string]any{"queryType": "grid", "level": "county"})
	if got := fmt.Sprint(column(t, f, "grid"), column(t, f, "risk"), column(t, f, "devices")); got != "[450204] [red] [4]" {
		t.Errorf("county %s", got)
	}
}

func TestRisk(t *testing.T) {
	r := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		open  map[string]int64
		ratio *float64
		want  string
	}{
		{map[string]int64{}, r(0), RiskGreen},
		{map[string]int64{}, nil, RiskGreen},
		{map[string]int64{"offline": 3}, r(0.05), RiskGreen},
		{map[string]int64{"fault": 1}, r(0), RiskYellow},
		{map[string]int64{"warning": 1}, nil, RiskYellow},
		{map[string]int64{}, r(0.10), RiskYellow},
		{map[string]int64{"alarm": 1}, r(0), RiskRed},
		{map[string]int64{"fire": 1}, nil, RiskRed},
		{map[string]int64{}, r(0.30), RiskRed},
	} {
		if got := Risk(tc.open, tc.ratio); got != tc.want {
			t.Errorf("Risk(%v, %v) = %s, want %s", tc.open, tc.ratio, got, tc.want)
		}
	}
}

func TestQueryStats(t *testing.T) {
	fw := startFirewatch(t)
	a := fw.raise(fw.rules.smoke, "sm-0002", 1)
	b := fw.raise(fw.rules.slotTemp, "ch-0004", 70)
	fw.raise(fw.rules.pressure, "hy-0003", 0.12) // st-other, nobody responds yet
	fw.move(a, alarms.StateAcknowledged, alarms.StateDispatched, alarms.StateArrived, alarms.StateResolved)
	fw.move(b, alarms.StateFalseAlarm)
	ds := newDS(t, fw.srv.URL, viewerSecret)
	// Without a severity: firewatch's own accounting (GET /api/v1/stats/response).
	// With one: computed by the plugin from the alarms' histories. Both agree.
	for _, sev := range []string{"all", "fire"} {
		f := run(t, ds, map[string]any{"queryType": "stats", "severity": sev})
		got := fmt.Sprint(column(t, f, "station"), column(t, f, "alarms"), column(t, f, "false_alarms"), column(t, f, "acknowledged"),
			column(t, f, "ack_within_1m"), column(t, f, "arrived"), column(t, f, "arrive_within_3m"))
		want := "[全部 all st-other st-tanxi] [3 1 2] [1 0 1] [1 0 1] [1 <nil> 1] [1 0 1] [1 <nil> 1]"
		if sev == "fire" {
			want = "[全部 all st-tanxi] [1 1] [0 0] [1 1] [1 1] [1 1] [1 1]"
		}
		if got != want {
			t.Errorf("severity %s: stats %s\nwant %s", sev, got, want)
		}
		if med := column(t, f, "ack_median_s"); med[len(med)-1] == "<nil>" {
			t.Errorf("no median acknowledge time: %v", med)
		}
	}
}

func TestStatsFromHistory(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	as := []Alarm{
		{ID: "1", Station: "s", State: "resolved", RaisedAt: t0, History: []Change{{To: "raised", At: t0}, {To: "acknowledged", At: at(30)},
			{To: "dispatched", At: at(40)}, {To: "arrived", At: at(150)}, {To: "resolved", At: at(600)}}},
		{ID: "2", Station: "s", State: "arrived", RaisedAt: t0, History: []Change{{To: "raised", At: t0}, {To: "acknowledged", At: at(90)},
			{To: "dispatched", At: at(100)}, {To: "arrived", At: at(400)}}},
		{ID: "3", Station: "s", State: "raised", RaisedAt: t0, History: []Change{{To: "raised", At: t0}}},
		{ID: "4", Station: "t", State: "false_alarm", RaisedAt: t0, History: []Change{{To: "raised", At: t0}, {To: "false_alarm", At: at(20)}}},
	}
	ss := StatsFromHistory(as)
	if len(ss) != 3 || ss[0].Station != "" || ss[0].Alarms != 4 || ss[0].FalseAlarms != 1 {
		t.Fatalf("stats %+v", ss)
	}
	s := ss[1]
	if s.Alarms != 3 || s.Acknowledge.N != 2 || s.Arrive.N != 2 || s.RespondedInTime != 0.5 || s.ArrivedInTime != 0.5 {
		t.Errorf("station s %+v", s)
	}
	if *s.Acknowledge.Median != 90 || *s.Arrive.P90 != 400 {
		t.Errorf("quantiles %v %v", *s.Acknowledge.Median, *s.Arrive.P90)
	}
}

func TestCheckHealth(t *testing.T) {
	fw := startFirewatch(t)
	res, err := newDS(t, fw.srv.URL, viewerSecret).CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil || res.Status != backend.HealthStatusOk {
		t.Fatalf("health: %v %+v", err, res)
	}
	var details map[string]any
	if err := json.Unmarshal(res.JSONDetails, &details); err != nil || details["version"] != "test-1" || details["devices"] != 4.0 {
		t.Errorf("details %s (%v)", res.JSONDetails, err)
	}
	res, _ = newDS(t, fw.srv.URL, "wrong-token-0000000000").CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if res.Status != backend.HealthStatusError {
		t.Errorf("wrong token: %+v", res)
	}
	res, _ = newDS(t, fw.srv.URL, "").CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if res.Status != backend.HealthStatusError {
		t.Errorf("no token against a firewatch with tokens: %+v", res)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	res, _ = newDS(t, dead.URL, viewerSecret).CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if res.Status != backend.HealthStatusError {
		t.Errorf("unreachable: %+v", res)
	}
	if _, err := NewDatasource(context.Background(), backend.DataSourceInstanceSettings{JSONData: json.RawMessage(`{"url":"ftp://x"}`)}); err == nil {
		t.Error("ftp URL accepted")
	}
}

// packets collects what a stream sends.
type packets struct{ c chan *backend.StreamPacket }

func (p packets) Send(pk *backend.StreamPacket) error { p.c <- pk; return nil }

func TestStreamTransitions(t *testing.T) {
	fw := startFirewatch(t)
	known := fw.raise(fw.rules.smoke, "sm-0002", 1)
	ds := newDS(t, fw.srv.URL, viewerSecret)

	// QueryData points the panel at the channel.
	f := run(t, ds, map[string]any{"queryType": "transitions", "grid": "450204001", "severity": "all"})
	if f.Meta == nil || f.Meta.Channel != "ds/firewatch-api/transitions/450204001/all" {
		t.Fatalf("channel %+v", f.Meta)
	}
	sub, _ := ds.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: "transitions/450204001/all"})
	if sub.Status != backend.SubscribeStreamStatusOK {
		t.Fatalf("subscribe: %v", sub.Status)
	}
	if sub, _ := ds.SubscribeStream(context.Background(), &backend.SubscribeStreamRequest{Path: "nonsense"}); sub.Status != backend.SubscribeStreamStatusNotFound {
		t.Errorf("subscribe nonsense: %v", sub.Status)
	}

	ctx, cancel := context.WithCancel(context.Background())
	got := packets{c: make(chan *backend.StreamPacket, 100)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ds.RunStream(ctx, &backend.RunStreamRequest{Path: "transitions/450204001/all"}, backend.NewStreamSender(got)); err != nil {
			t.Errorf("RunStream: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	// The stream's first poll (two list requests) learns the states; what
	// happens after it is sent.
	for fw.alarmLists.Load() < 2 {
		select {
		case <-fw.listed:
		case <-time.After(wait):
			t.Fatal("the stream did not poll")
		}
	}
	fw.move(known, alarms.StateAcknowledged)
	fresh := fw.raise(fw.rules.residual, "el-0001", 356)
	fw.raise(fw.rules.pressure, "hy-0003", 0.12) // another town: not on this channel

	want := map[string]bool{known + " acknowledged": false, fresh + " raised": false}
	deadline := time.After(wait)
	for done := false; !done; {
		select {
		case pk := <-got.c:
			var fr data.Frame
			if err := json.Unmarshal(pk.Data, &fr); err != nil {
				t.Fatalf("packet: %v", err)
			}
			ids, tos, devs := column(t, &fr, "id"), column(t, &fr, "to"), column(t, &fr, "device")
			for i := range ids {
				if devs[i] == "hy-0003" {
					t.Errorf("transition of another town streamed: %v %v", ids[i], tos[i])
				}
				if ids[i] == known && tos[i] == "raised" {
					t.Errorf("the known alarm's history was replayed")
				}
				if _, ok := want[ids[i]+" "+tos[i]]; ok {
					want[ids[i]+" "+tos[i]] = true
				}
			}
			done = true
			for _, ok := range want {
				done = done && ok
			}
		case <-deadline:
			t.Fatalf("transitions not streamed within %s: %v", wait, want)
		}
	}
	if res, _ := ds.PublishStream(context.Background(), &backend.PublishStreamRequest{Path: "transitions/all/all"}); res.Status != backend.PublishStreamStatusPermissionDenied {
		t.Errorf("publish: %v", res.Status)
	}
}
