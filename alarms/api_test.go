package alarms

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAPI(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	r := newTestRules(t)
	m := start(t, testConfig(t), l)
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000)) // alm-000001 alarm 450204001001
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))                // alm-000002 fire  450204001001
	m.Submit(raise(r.pressure, devHydrant, 0, 0.08, 60_000))   // alm-000003 alarm 450204002001
	m.Submit(clearEv(r.pressure, devHydrant, 0, 0.13))         // alm-000003 cleared
	poll(t, "three alarms, one cleared", func() bool {
		as := list(t, m.Manager, Filter{})
		return len(as) == 3 && as[0].State == StateAutoCleared
	})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	hourAgo := url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339))
	inAnHour := url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))
	tests := []struct {
		query   string
		want    []string // ids, newest first
		wantErr string   // part of the 400 error
	}{
		{query: "", want: []string{"alm-000003", "alm-000002", "alm-000001"}},
		{query: "state=open", want: []string{"alm-000002", "alm-000001"}},
		{query: "state=auto_cleared", want: []string{"alm-000003"}},
		{query: "state=closed", want: []string{"alm-000003"}},
		{query: "state=resolved", want: []string{}},
		{query: "severity=fire", want: []string{"alm-000002"}},
		{query: "severity=warning", want: []string{}},
		{query: "grid=450204001", want: []string{"alm-000002", "alm-000001"}},
		{query: "grid=450204002001", want: []string{"alm-000003"}},
		{query: "grid=4502", want: []string{"alm-000003", "alm-000002", "alm-000001"}},
		{query: "grid=330326", want: []string{}},
		{query: "device=sm-450204-0002", want: []string{"alm-000002"}},
		{query: "state=open&severity=alarm&grid=450204", want: []string{"alm-000001"}},
		{query: "limit=1", want: []string{"alm-000003"}},
		{query: "since=" + hourAgo + "&until=" + inAnHour, want: []string{"alm-000003", "alm-000002", "alm-000001"}},
		{query: "since=" + inAnHour, want: []string{}},
		{query: "until=" + hourAgo, want: []string{}},
		{query: "state=shut", wantErr: "state"},
		{query: "severity=hot", wantErr: "severity"},
		{query: "grid=abc", wantErr: "grid"},
		{query: "grid=4502041", wantErr: "2, 4, 6, 9 or 12 digits"},
		{query: "device=a/b", wantErr: "device"},
		{query: "since=yesterday", wantErr: "RFC 3339"},
		{query: "since=" + inAnHour + "&until=" + hourAgo, wantErr: "until must be after since"},
		{query: "limit=0", wantErr: "limit"},
		{query: "limit=x", wantErr: "limit"},
		{query: "limit=5000", wantErr: "limit"},
		{query: "state=raised&state=cleared", wantErr: "2 times"},
		{query: "sevrity=fire", wantErr: "unknown query parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/api/v1/alarms?" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.wantErr != "" {
				var e struct{ Error string }
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Error, tt.wantErr) {
					t.Errorf("got %d %q, want 400 mentioning %q", resp.StatusCode, e.Error, tt.wantErr)
				}
				return
			}
			var body struct{ Alarms []Alarm }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, a := range body.Alarms {
				ids = append(ids, a.ID)
			}
			if resp.StatusCode != http.StatusOK || !slices.Equal(ids, tt.want) {
				t.Errorf("got %d %v, want 200 %v", resp.StatusCode, ids, tt.want)
			}
		})
	}
}

func TestAPIGet(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	m := start(t, testConfig(t), l)
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	rc.next(t)
	poll(t, "delivery recorded", func() bool { return get(t, m.Manager, "alm-000001").Pushes[0].DeliveredAt != nil })
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	tests := []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/v1/alarms/alm-000001", http.StatusOK},
		{"GET", "/api/v1/alarms/1", http.StatusOK},
		{"GET", "/api/v1/alarms/alm-999999", http.StatusNotFound},
		{"GET", "/api/v1/alarms/xyz", http.StatusBadRequest},
		{"POST", "/api/v1/alarms", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != http.StatusOK {
				return
			}
			var a Alarm
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
				t.Fatal(err)
			}
			if a.ID != "alm-000001" || a.Device != "el-450204-0001" || a.SeverityZH != "报警" ||
				len(a.Pushes) != 1 || a.Pushes[0].DeliveredAt == nil || a.Pushes[0].Attempts != 1 {
				t.Errorf("alarm %+v", a)
			}
			if _, off := a.RaisedAt.Zone(); off != 8*3600 {
				t.Errorf("raised_at in zone offset %d, want +08:00", off)
			}
		})
	}
}

func TestParseTokens(t *testing.T) {
	toks, err := ParseTokens(" viewer1:viewer:0123456789abcdef , 张三:operator:fedcba9876543210,root:admin:aaaaaaaaaaaaaaaaaaaa")
	if err != nil || len(toks) != 3 || toks[1].Name != "张三" || toks[1].Role != RoleOperator || toks[2].Role != RoleAdmin {
		t.Fatalf("ParseTokens: %+v %v", toks, err)
	}
	for _, bad := range []string{"a:viewer", "a:boss:0123456789abcdef", "a:viewer:tiny", "a b:viewer:0123456789abcdef",
		"a:viewer:0123456789abcdef,a:admin:0123456789abcdef"} {
		_, err := ParseTokens(bad)
		if err == nil {
			t.Errorf("ParseTokens(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "0123456789abcdef") || strings.Contains(err.Error(), "tiny") {
			t.Errorf("ParseTokens(%q) error quotes the secret: %v", bad, err)
		}
	}
}

// TestAPIActions: bearer tokens with roles, every action through HTTP, and
// the history they leave.
func TestAPIActions(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	const viewer, operator, admin, platform = "viewer-token-0123456789", "operator-token-0123456789", "admin-token-0123456789", "platform-token-0123456789"
	var err error
	cfg.Tokens, err = ParseTokens("grafana:viewer:" + viewer + ",zhang-san:operator:" + operator + ",root:admin:" + admin +
		",119-platform:operator:" + platform)
	if err != nil {
		t.Fatal(err)
	}
	m := start(t, cfg, l)
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000)) // alm-000001
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))                // alm-000002
	rc.next(t)
	rc.next(t)
	// The history checked below has the delivery before the receipt.
	poll(t, "alm-000001 pushed", func() bool { return get(t, m.Manager, "alm-000001").State == StatePushed })
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	do := func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	tests := []struct {
		name, method, path, token, body string
		status                          int
		state                           string
	}{
		{"read without token", "GET", "/api/v1/alarms", "", "", 401, ""},
		{"read with a wrong token", "GET", "/api/v1/alarms", "nope-nope-nope-nope", "", 401, ""},
		{"read as viewer", "GET", "/api/v1/alarms", viewer, "", 200, ""},
		{"write without token", "POST", "/api/v1/alarms/alm-000001/acknowledge", "", "", 401, ""},
		{"write as viewer", "POST", "/api/v1/alarms/alm-000001/acknowledge", viewer, "", 403, ""},
		{"unknown action", "POST", "/api/v1/alarms/alm-000001/explode", operator, "", 404, ""},
		{"unknown alarm", "POST", "/api/v1/alarms/alm-000099/acknowledge", operator, "", 404, ""},
		{"bad body", "POST", "/api/v1/alarms/alm-000001/acknowledge", operator, `{"notes":"x"}`, 400, ""},
		{"illegal: arrive before dispatch", "POST", "/api/v1/alarms/alm-000001/arrive", operator, "", 409, ""},
		{"receipt by the platform", "POST", "/api/v1/alarms/alm-000001/receipt", platform, "", 200, "received"},
		{"receipt again: no-op", "POST", "/api/v1/alarms/alm-000001/receipt", platform, "", 200, "received"},
		{"acknowledge", "POST", "/api/v1/alarms/alm-000001/acknowledge", operator, `{"note":"已电话联系业主"}`, 200, "acknowledged"},
		{"receipt after acknowledge: no-op", "POST", "/api/v1/alarms/alm-000001/receipt", platform, "", 200, "acknowledged"},
		{"dispatch", "POST", "/api/v1/alarms/alm-000001/dispatch", operator, "", 200, "dispatched"},
		{"arrive", "POST", "/api/v1/alarms/alm-000001/arrive", admin, "", 200, "arrived"},
		{"resolve", "POST", "/api/v1/alarms/alm-000001/resolve", operator, `{"note":"漏电开关已更换"}`, 200, "resolved"},
		{"closed stays closed", "POST", "/api/v1/alarms/alm-000001/false-alarm", operator, "", 409, ""},
		{"fire false alarm", "POST", "/api/v1/alarms/alm-000002/false-alarm", operator, `{"note":"厨房油烟"}`, 200, "false_alarm"},
	}
	for _, tt := range tests {
		status, body := do(tt.method, tt.path, tt.token, tt.body)
		if status != tt.status {
			t.Errorf("%s: status %d %v, want %d", tt.name, status, body, tt.status)
			continue
		}
		if tt.state != "" && body["state"] != tt.state {
			t.Errorf("%s: state %v, want %s", tt.name, body["state"], tt.state)
		}
		if status >= 400 && body["error"] == "" {
			t.Errorf("%s: no error message", tt.name)
		}
	}
	a := get(t, m.Manager, "alm-000001")
	var steps []string
	for _, h := range a.History {
		steps = append(steps, string(h.To)+"/"+h.Actor)
	}
	want := []string{"raised/rules", "pushed/dispatch", "received/119-platform", "acknowledged/zhang-san",
		"dispatched/zhang-san", "arrived/root", "resolved/zhang-san"}
	if !slices.Equal(steps, want) {
		t.Errorf("history %v, want %v", steps, want)
	}
	if a.History[3].Note != "已电话联系业主" || a.History[6].Note != "漏电开关已更换" {
		t.Errorf("notes not recorded: %+v", a.History)
	}
	// Response times follow the history, in order, within the targets.
	rt := a.Response
	if rt == nil || rt.Pushed == nil || rt.Received == nil || rt.Acknowledged == nil || rt.Dispatched == nil ||
		rt.Arrived == nil || rt.Closed == nil || *rt.Pushed > *rt.Received || *rt.Received > *rt.Acknowledged ||
		*rt.Arrived > *rt.Closed || rt.RespondedInTime == nil || !*rt.RespondedInTime || rt.ArrivedInTime == nil || !*rt.ArrivedInTime {
		t.Errorf("response times %+v", rt)
	}
	// Response-time accounting: alm-000001 acknowledged and arrived in
	// time, alm-000002 a false alarm.
	var stats struct{ Stations []StationStats }
	resp, err := http.DefaultClient.Do(func() *http.Request {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/stats/response?grid=450204", nil)
		req.Header.Set("Authorization", "Bearer "+viewer)
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if len(stats.Stations) != 2 || stats.Stations[0].Station != "" || stats.Stations[1].Station != "st-tanxi" {
		t.Fatalf("stats %+v", stats)
	}
	st := stats.Stations[1]
	if st.Alarms != 2 || st.FalseAlarms != 1 || st.Acknowledge.N != 1 || st.Arrive.N != 1 || st.Acknowledge.Median == nil ||
		st.RespondedInTime != 1 || st.ArrivedInTime != 1 {
		t.Errorf("station stats %+v", st)
	}
	// The closing pushes reach the receivers; each once.
	keys := map[string]bool{}
	for range 2 {
		keys[rc.next(t).push.IdempotencyKey] = true
	}
	if !keys["alm-000001-resolved"] || !keys["alm-000002-false_alarm"] {
		t.Errorf("closing pushes %v", keys)
	}
}
