package apidoc

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func nop(http.ResponseWriter, *http.Request) {}

// TestRoutes lists the patterns of a mux with a ServeMux mounted on it,
// as firewatch mounts the alarm API.
func TestRoutes(t *testing.T) {
	inner := http.NewServeMux()
	inner.HandleFunc("GET /api/v1/alarms", nop)
	inner.HandleFunc("POST /api/v1/alarms/{id}/{action}", nop)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", inner)
	mux.HandleFunc("GET /healthz", nop)
	mux.HandleFunc("GET /api/v1/devices/{id}", nop)
	mux.HandleFunc("/nbiot/ctwing/", nop)
	mux.HandleFunc("GET /ui/", nop)
	mux.HandleFunc("GET /{$}", nop)

	pats, err := Patterns(mux)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/api/v1/", "/nbiot/ctwing/", "GET /api/v1/devices/{id}", "GET /healthz", "GET /ui/", "GET /{$}"}
	if !slices.Equal(pats, want) {
		t.Errorf("Patterns: %q, want %q", pats, want)
	}
	rs, err := Routes(mux)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.String())
	}
	slices.Sort(got)
	want = []string{"GET /api/v1/alarms", "GET /api/v1/devices/{id}", "GET /healthz", "GET /ui/", "GET /{$}",
		"POST /api/v1/alarms/{id}/{action}", "any method /nbiot/ctwing/"}
	if !slices.Equal(got, want) {
		t.Errorf("Routes: %q, want %q", got, want)
	}
}

// TestCompare: a route missing from the description is named with its
// method and path, and so is an operation no route serves.
func TestCompare(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/alarms/{id}", nop)
	mux.HandleFunc("POST /api/v1/alarms/{id}/{action}", nop)
	mux.HandleFunc("GET /api/v1/registry/devices", nop)
	mux.HandleFunc("GET /console", nop)
	doc, err := openapi3.NewLoader().LoadFromData([]byte(`
openapi: 3.0.3
info: {title: t, version: v1}
paths:
  /api/v1/alarms/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: string}}]
    get: {responses: {'200': {description: ok}}}
    delete: {responses: {'200': {description: ok}}}
  /api/v1/alarms/{id}/resolve:
    parameters: [{name: id, in: path, required: true, schema: {type: string}}]
    post: {responses: {'200': {description: ok}}}
  /api/v1/gone:
    get: {responses: {'200': {description: ok}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	problems, err := Compare(doc, mux, []string{"GET /console", "GET /old-page"})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		`firewatch serves GET /api/v1/registry/devices (pattern "GET /api/v1/registry/devices"), but docs/api.yaml does not describe it: add paths: /api/v1/registry/devices: get:`,
		"docs/api.yaml describes DELETE /api/v1/alarms/{id}, but firewatch serves no such route",
		"docs/api.yaml describes GET /api/v1/gone, but firewatch serves no such route",
		`the exclusion "GET /old-page" names no route`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(problems) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(problems), all)
	}
}
