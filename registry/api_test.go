package registry

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// testGuard stands in for the alarm API's token check (alarms.Manager.
// Require): "viewer-token" reads, "admin-token" also writes as "root".
func testAPI(t *testing.T) (*Store, *httptest.Server) {
	t.Helper()
	s, _ := started(t, filepath.Join(t.TempDir(), "registry.db"), ledgerFile(t, t.TempDir(), nil))
	role := func(r *http.Request) int {
		switch r.Header.Get("Authorization") {
		case "Bearer viewer-token":
			return 1
		case "Bearer admin-token":
			return 3
		}
		return 0
	}
	mux := http.NewServeMux()
	(&API{
		Store: s,
		Read: func(h http.HandlerFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if role(r) < 1 {
					http.Error(w, "no", http.StatusUnauthorized)
					return
				}
				h(w, r)
			}
		},
		Write: func(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if role(r) < 3 {
					http.Error(w, "no", http.StatusForbidden)
					return
				}
				h(w, r, "root")
			}
		},
	}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, srv
}

type answer struct {
	status int
	etag   string
	body   map[string]any
	raw    string
}

func call(t *testing.T, srv *httptest.Server, method, path, token, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, etag: resp.Header.Get("ETag"), raw: string(b)}
	json.Unmarshal(b, &a.body)
	return a
}

func TestAPIDevices(t *testing.T) {
	s, srv := testAPI(t)
	const dev = `{"id":"sm-9","kind":"smoke","grid":"450204002003","address":"鹅山路20号","generate_secret":true,
		"rules":{"battery_low":{"off":true}},"heartbeat":"12h"}`
	if a := call(t, srv, "POST", "/api/v1/registry/devices", "viewer-token", dev); a.status != http.StatusForbidden {
		t.Fatalf("viewer POST: %d", a.status)
	}
	a := call(t, srv, "POST", "/api/v1/registry/devices", "admin-token", dev)
	if a.status != http.StatusCreated || a.etag == "" || a.body["secret"] == "" || a.body["has_secret"] != true {
		t.Fatalf("POST: %d %s", a.status, a.raw)
	}
	stored, _, _, _ := s.DeviceEntry(context.Background(), "sm-9")
	if !strings.HasPrefix(stored.SecretHash, "$argon2id$") || strings.Contains(stored.SecretHash, a.body["secret"].(string)) {
		t.Errorf("stored secret hash %q", stored.SecretHash)
	}
	if a := call(t, srv, "POST", "/api/v1/registry/devices", "admin-token", dev); a.status != http.StatusConflict {
		t.Errorf("second POST: %d %s", a.status, a.raw)
	}
	g := call(t, srv, "GET", "/api/v1/registry/devices/sm-9", "viewer-token", "")
	if g.status != 200 || g.etag != a.etag || g.body["secret"] != nil || g.body["heartbeat"] != "12h0m0s" ||
		!strings.Contains(g.raw, `"rules":{"battery_low":{"off":true}}`) {
		t.Fatalf("GET: %d %s %s", g.status, g.etag, g.raw)
	}

	// Field-level problems, all of them, as 422.
	bad := call(t, srv, "PUT", "/api/v1/registry/devices/sm-9", "admin-token", `{"kind":"toaster","grid":"12","heartbeat":"soon"}`)
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.raw, `"field":"heartbeat"`) {
		t.Fatalf("bad PUT: %d %s", bad.status, bad.raw)
	}
	bad = call(t, srv, "PUT", "/api/v1/registry/devices/sm-9", "admin-token", `{"kind":"toaster","grid":"12"}`)
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.raw, `"field":"kind"`) || !strings.Contains(bad.raw, `"field":"grid"`) ||
		!strings.Contains(bad.raw, `"section":"devices"`) || !strings.Contains(bad.raw, `"id":"sm-9"`) {
		t.Fatalf("bad PUT: %d %s", bad.status, bad.raw)
	}

	// If-Match: a stale ETag is refused with 412, the current one wins.
	put := `{"kind":"smoke","grid":"450204002003","address":"鹅山路22号"}`
	ok := call(t, srv, "PUT", "/api/v1/registry/devices/sm-9", "admin-token", put, "If-Match", a.etag)
	if ok.status != 200 || ok.etag == a.etag || ok.body["has_secret"] != true {
		t.Fatalf("PUT: %d %s", ok.status, ok.raw)
	}
	if st := call(t, srv, "PUT", "/api/v1/registry/devices/sm-9", "admin-token", put, "If-Match", a.etag); st.status != http.StatusPreconditionFailed {
		t.Fatalf("stale PUT: %d %s", st.status, st.raw)
	}
	if st := call(t, srv, "DELETE", "/api/v1/registry/devices/sm-9", "admin-token", "", "If-Match", a.etag); st.status != http.StatusPreconditionFailed {
		t.Fatalf("stale DELETE: %d %s", st.status, st.raw)
	}
	if d := call(t, srv, "DELETE", "/api/v1/registry/devices/sm-9", "admin-token", "", "If-Match", ok.etag); d.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", d.status, d.raw)
	}
	if d := call(t, srv, "GET", "/api/v1/registry/devices/sm-9", "admin-token", ""); d.status != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", d.status)
	}
	if d := call(t, srv, "DELETE", "/api/v1/registry/devices/sm-9", "admin-token", ""); d.status != http.StatusNotFound {
		t.Fatalf("second DELETE: %d", d.status)
	}

	// Pages, and empty lists as [].
	p := call(t, srv, "GET", "/api/v1/registry/devices?limit=2", "viewer-token", "")
	if p.status != 200 || len(p.body["items"].([]any)) != 2 || p.body["next"] == "" {
		t.Fatalf("page: %s", p.raw)
	}
	p2 := call(t, srv, "GET", "/api/v1/registry/devices?limit=2&after="+p.body["next"].(string), "viewer-token", "")
	if first := p2.body["items"].([]any)[0].(map[string]any)["id"]; first.(string) <= p.body["next"].(string) {
		t.Errorf("second page starts at %v", first)
	}
	if e := call(t, srv, "GET", "/api/v1/registry/gateways?after=zzz", "viewer-token", ""); !strings.Contains(e.raw, `"items":[]`) {
		t.Errorf("empty list: %s", e.raw)
	}

	// The audit history of sm-9: created, updated, deleted by root.
	h := call(t, srv, "GET", "/api/v1/registry/audit?entity=device&id=sm-9", "viewer-token", "")
	items := h.body["items"].([]any)
	var actions []string
	for _, it := range items {
		m := it.(map[string]any)
		if m["actor"] != "root" || m["source"] != "api" {
			t.Errorf("audit record %v", m)
		}
		actions = append(actions, m["action"].(string))
	}
	if strings.Join(actions, ",") != "delete,update,create" {
		t.Errorf("audit actions %v", actions)
	}
	if strings.Contains(h.raw, "argon2") {
		t.Error("the audit shows a secret hash")
	}
}

func TestAPIStationsGatewaysPlaces(t *testing.T) {
	_, srv := testAPI(t)
	st := call(t, srv, "POST", "/api/v1/registry/stations", "admin-token",
		`{"id":"st-new","name":"新村微型消防站","grids":["450204003"],"endpoint":"http://127.0.0.1:1/x","lat":24.3,"lon":109.4}`)
	if st.status != http.StatusCreated || st.etag == "" {
		t.Fatalf("POST station: %d %s", st.status, st.raw)
	}
	if bad := call(t, srv, "POST", "/api/v1/registry/stations", "admin-token", `{"id":"st-bad","name":"x","grids":[],"endpoint":"ftp://x"}`); bad.status != http.StatusUnprocessableEntity ||
		!strings.Contains(bad.raw, `"section":"stations"`) {
		t.Fatalf("bad station: %d %s", bad.status, bad.raw)
	}
	// A station devices depend on cannot go.
	if d := call(t, srv, "DELETE", "/api/v1/registry/stations/st-tanxi", "admin-token", ""); d.status != http.StatusUnprocessableEntity {
		t.Fatalf("DELETE of a covering station: %d %s", d.status, d.raw)
	}
	gw := call(t, srv, "POST", "/api/v1/registry/gateways", "admin-token", `{"id":"gw-2","generate_secret":true}`)
	if gw.status != http.StatusCreated || gw.body["secret"] == nil || strings.Contains(gw.raw, "argon2") {
		t.Fatalf("POST gateway: %d %s", gw.status, gw.raw)
	}
	pl := call(t, srv, "PUT", "/api/v1/registry/places/450204003", "admin-token", `{"name":"新村街道"}`)
	if pl.status != 200 || pl.etag == "" {
		t.Fatalf("PUT place: %d %s", pl.status, pl.raw)
	}
	if bad := call(t, srv, "PUT", "/api/v1/registry/places/45020", "admin-token", `{"name":"x"}`); bad.status != http.StatusUnprocessableEntity {
		t.Fatalf("bad place: %d %s", bad.status, bad.raw)
	}
	if g := call(t, srv, "GET", "/api/v1/registry/places/450204003", "viewer-token", ""); g.body["name"] != "新村街道" {
		t.Fatalf("GET place: %s", g.raw)
	}
	if d := call(t, srv, "DELETE", "/api/v1/registry/places/450204003", "admin-token", ""); d.status != http.StatusNoContent {
		t.Fatalf("DELETE place: %d", d.status)
	}
}

// Two admins PUT the same device with the ETag they both read: exactly one
// gets 200, the other 412.
func TestAPIConcurrentWriters(t *testing.T) {
	_, srv := testAPI(t)
	g := call(t, srv, "GET", "/api/v1/registry/devices/el-1", "viewer-token", "")
	if g.etag == "" {
		t.Fatalf("no ETag: %s", g.raw)
	}
	codes := make(chan int, 2)
	for _, addr := range []string{"鹅山路12号东", "鹅山路12号西"} {
		go func() {
			body := `{"kind":"electrical","grid":"450204002003","gateway":"gw-1","address":"` + addr + `"}`
			req, _ := http.NewRequest("PUT", srv.URL+"/api/v1/registry/devices/el-1", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer admin-token")
			req.Header.Set("If-Match", g.etag)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	a, b := <-codes, <-codes
	if !(a == 200 && b == 412 || a == 412 && b == 200) {
		t.Fatalf("answers %d and %d, want one 200 and one 412", a, b)
	}
}
