package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// The registry API takes the alarm API's tokens: reads need viewer, writes
// admin, and the audit names the admin's token.
func TestRegistryAPITokens(t *testing.T) {
	cfg := defaults()
	cfg.Ledger = writeLedger(t, "http://127.0.0.1:1")
	cfg.MQTT.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Tokens = "duty:viewer:viewer-secret-0123456,ops:operator:operator-secret-01234,zhao-liu:admin:admin-secret-01234567"
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = "s"
	cfg.Influx.FlushInterval = time.Second
	s, err := newService(&cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	do := func(method, path, token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		s.httpSrv.Handler.ServeHTTP(rec, req)
		return rec
	}
	const dev = `{"id":"el-9","kind":"electrical","grid":"450204002003","address":"鹅山路40号"}`
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/api/v1/registry/devices", "", "", http.StatusUnauthorized},
		{"GET", "/api/v1/registry/devices", "viewer-secret-0123456", "", http.StatusOK},
		{"GET", "/api/v1/registry/devices/el-1", "viewer-secret-0123456", "", http.StatusOK},
		{"POST", "/api/v1/registry/devices", "", dev, http.StatusUnauthorized},
		{"POST", "/api/v1/registry/devices", "viewer-secret-0123456", dev, http.StatusForbidden},
		{"POST", "/api/v1/registry/devices", "operator-secret-01234", dev, http.StatusForbidden},
		{"DELETE", "/api/v1/registry/devices/el-1", "operator-secret-01234", "", http.StatusForbidden},
		{"POST", "/api/v1/registry/devices", "admin-secret-01234567", dev, http.StatusCreated},
		{"GET", "/api/v1/registry/devices/el-9", "viewer-secret-0123456", "", http.StatusOK},
	} {
		if rec := do(c.method, c.path, c.token, c.body); rec.Code != c.want {
			t.Errorf("%s %s with %q: %d, want %d: %s", c.method, c.path, c.token, rec.Code, c.want, rec.Body)
		}
	}
	rec := do("GET", "/api/v1/registry/audit?entity=device&id=el-9", "viewer-secret-0123456", "")
	if !strings.Contains(rec.Body.String(), `"actor":"zhao-liu"`) || !strings.Contains(rec.Body.String(), `"source":"api"`) {
		t.Errorf("audit of el-9: %s", rec.Body)
	}
}
