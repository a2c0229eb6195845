package responder

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestConsoleConfig: a tile template needs http(s), a host and each of
// {z}, {x}, {y}; empty is the plain projection.
func TestConsoleConfig(t *testing.T) {
	for _, c := range []struct {
		tiles string
		ok    bool
	}{
		{"", true},
		{"http://tiles.local/{z}/{x}/{y}.png", true},
		{"https://t0.tianditu.gov.cn/DataServer?T=vec_w&x={x}&y={y}&l={z}&tk=abc", true},
		{"http://127.0.0.1:8080/tiles/{z}/{x}/{y}", true},
		{"http://tiles.local/{z}/{x}.png", false},
		{"ftp://tiles.local/{z}/{x}/{y}.png", false},
		{"/tiles/{z}/{x}/{y}.png", false},
		{"http://user:pw@tiles.local/{z}/{x}/{y}.png", false},
	} {
		err := ConsoleConfig{MapTiles: c.tiles}.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%q: %v, want ok %v", c.tiles, err, c.ok)
		}
	}
}

// TestConsoleCSP: the console's Content-Security-Policy lets images come
// from the tile host when there are tiles, and from nowhere else.
func TestConsoleCSP(t *testing.T) {
	for _, c := range []struct {
		tiles, want string
	}{
		{"", "img-src 'self' data:;"},
		{"https://t0.tianditu.gov.cn/DataServer?T=vec_w&x={x}&y={y}&l={z}&tk=abc", "img-src 'self' data: https://t0.tianditu.gov.cn;"},
	} {
		s := &Server{cfg: Config{Console: ConsoleConfig{MapTiles: c.tiles}}}
		w := httptest.NewRecorder()
		s.consolePage()(w, httptest.NewRequest("GET", "/console", nil))
		got := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(got, c.want) || strings.Count(got, "img-src") != 1 || !strings.Contains(w.Body.String(), "/ui/tiles.js") {
			t.Errorf("tiles %q: CSP %q, want %q in it", c.tiles, got, c.want)
		}
	}
}
