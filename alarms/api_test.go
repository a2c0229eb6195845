package alarms

import (
	"encoding/json"
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
		return len(as) == 3 && as[0].State == StateCleared
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
		{query: "state=raised", want: []string{"alm-000002", "alm-000001"}},
		{query: "state=cleared", want: []string{"alm-000003"}},
		{query: "severity=fire", want: []string{"alm-000002"}},
		{query: "severity=warning", want: []string{}},
		{query: "grid=450204001", want: []string{"alm-000002", "alm-000001"}},
		{query: "grid=450204002001", want: []string{"alm-000003"}},
		{query: "grid=4502", want: []string{"alm-000003", "alm-000002", "alm-000001"}},
		{query: "grid=330326", want: []string{}},
		{query: "device=sm-450204-0002", want: []string{"alm-000002"}},
		{query: "state=raised&severity=alarm&grid=450204", want: []string{"alm-000001"}},
		{query: "limit=1", want: []string{"alm-000003"}},
		{query: "since=" + hourAgo + "&until=" + inAnHour, want: []string{"alm-000003", "alm-000002", "alm-000001"}},
		{query: "since=" + inAnHour, want: []string{}},
		{query: "until=" + hourAgo, want: []string{}},
		{query: "state=open", wantErr: "state"},
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
