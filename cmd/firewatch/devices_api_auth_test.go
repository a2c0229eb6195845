package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Once tokens are configured, the devices API needs one, like the alarms.
func TestDevicesAPINeedsToken(t *testing.T) {
	cfg := defaults()
	cfg.Ledger = writeLedger(t, "http://127.0.0.1:1")
	cfg.MQTT.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Tokens = "duty:viewer:viewer-secret-0123456,ops:operator:operator-secret-01234"
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = "s"
	cfg.Influx.FlushInterval = time.Second
	s, err := newService(&cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	for _, c := range []struct {
		token string
		want  int
	}{
		{"", http.StatusUnauthorized},
		{"wrong", http.StatusUnauthorized},
		{"viewer-secret-0123456", http.StatusOK},
		{"operator-secret-01234", http.StatusOK},
	} {
		for _, path := range []string{"/api/v1/devices", "/api/v1/devices/el-1"} {
			req := httptest.NewRequest("GET", path, nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			rec := httptest.NewRecorder()
			s.httpSrv.Handler.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Errorf("GET %s with token %q: %d, want %d: %s", path, c.token, rec.Code, c.want, rec.Body)
			}
		}
	}
}
