package httpjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusConflict, map[string]string{"error": "请先点击“到场” <b>"})
	if rec.Code != http.StatusConflict || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if got, want := rec.Body.String(), "{\"error\":\"请先点击“到场” <b>\"}\n"; got != want {
		t.Fatalf("body %q, want %q (HTML characters not escaped)", got, want)
	}
}
