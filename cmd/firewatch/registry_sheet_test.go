package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/registry/sheet"
)

// The spreadsheet endpoints as firewatch serves them: admin only; an
// imported CSV is in the store (it survives a restart) and in the export.
func TestRegistrySheetImport(t *testing.T) {
	cfg := defaults()
	cfg.Ledger = writeLedger(t, "http://127.0.0.1:1")
	cfg.MQTT.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Tokens = "duty:viewer:viewer-secret-0123456,root:admin:admin-secret-0123456789"
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = "s"
	cfg.Influx.FlushInterval = time.Second
	start := func() *service {
		s, err := newService(&cfg, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	do := func(s *service, method, path, token, ctype, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		s.httpSrv.Handler.ServeHTTP(rec, req)
		return rec
	}
	s := start()
	if rec := do(s, "GET", "/api/v1/registry/template.xlsx", "viewer-secret-0123456", "", ""); rec.Code != http.StatusForbidden {
		t.Fatalf("template for a viewer: %d", rec.Code)
	}
	if rec := do(s, "GET", "/api/v1/registry/template.xlsx", "admin-secret-0123456789", "", ""); rec.Code != 200 || rec.Header().Get("Content-Type") != sheet.TypeXLSX {
		t.Fatalf("template: %d %v", rec.Code, rec.Header())
	}
	const csv = "设备编号,设备类型,行政区划代码,地址,网关\nsm-9,独立式感烟火灾探测报警器,450204002003,鹅山路20号,gw-1\n"
	rec := do(s, "POST", "/api/v1/registry/import", "admin-secret-0123456789", "text/csv", csv)
	var res sheet.Result
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 || !res.Applied || res.Added != 1 {
		t.Fatalf("import: %d %s", rec.Code, rec.Body)
	}
	s.close()

	s = start()
	t.Cleanup(s.close)
	rec = do(s, "GET", "/api/v1/registry/export.csv", "admin-secret-0123456789", "", "")
	b, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || !strings.Contains(string(b), "sm-9,独立式感烟火灾探测报警器") {
		t.Fatalf("export after restart: %d %s", rec.Code, b)
	}
}
