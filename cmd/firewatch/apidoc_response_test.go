package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/internal/apidoc"
)

// apiCall is one request of TestAPIAnswersAsDescribed.
type apiCall struct {
	method, url, template string // url after the base; template: the path in docs/api.yaml
	token, body           string
	status                int
	empty                 []string // top-level fields that must be [] (empty lists)
}

// nullable are the fields that are null by design (docs/api.yaml: nullable).
var nullable = []string{"answer_rate", "median_answer_seconds", "pending"}

// TestAPIAnswersAsDescribed runs firewatch on an empty alarm store and asks
// each list endpoint: an empty list is [] (never null, issue 18), and no
// field anywhere is null but those described as nullable; then it raises
// an alarm through a CTWing push and reads and acknowledges it. Every
// answer is validated against docs/api.yaml (status and body schema).
func TestAPIAnswersAsDescribed(t *testing.T) {
	ctx := context.Background()
	doc, err := apidoc.Load(ctx, apidoc.SpecPath())
	if err != nil {
		t.Fatal(err)
	}
	cfg := fullConfig(t)
	s, _ := runService(t, &cfg, slog.LevelError)
	base := s.httpURL()

	do := func(c apiCall) map[string]json.RawMessage {
		t.Helper()
		req, err := http.NewRequest(c.method, base+c.url, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.url, resp.StatusCode, c.status, body)
			return nil
		}
		if err := apidoc.CheckResponse(ctx, doc, c.method, c.template, req, resp, body); err != nil {
			t.Error(err)
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			return nil
		}
		nulls, err := apidoc.Nulls(body, nullable...)
		if err != nil {
			t.Errorf("%s %s: %v: %s", c.method, c.url, err, body)
		}
		for _, n := range nulls {
			t.Errorf("%s %s: %s is null (an empty list must be [], an empty map {}): %s", c.method, c.url, n, body)
		}
		var top map[string]json.RawMessage
		json.Unmarshal(body, &top)
		for _, f := range c.empty {
			if string(top[f]) != "[]" {
				t.Errorf("%s %s: %s is %s, want [] on an empty store", c.method, c.url, f, top[f])
			}
		}
		return top
	}

	// The empty store.
	for _, c := range []apiCall{
		{method: "GET", url: "/api/v1/alarms", template: "/api/v1/alarms", empty: []string{"alarms"}},
		{method: "GET", url: "/api/v1/alarms?state=open&grid=450204", template: "/api/v1/alarms", empty: []string{"alarms"}},
		{method: "GET", url: "/api/v1/alarms/alm-000999", template: "/api/v1/alarms/{id}", status: 404},
		{method: "GET", url: "/api/v1/stats/response?grid=450204", template: "/api/v1/stats/response"},
		{method: "GET", url: "/api/v1/digest?grid=450204&schedule=daily", template: "/api/v1/digest", empty: []string{"open", "offline", "false_ratio"}},
		{method: "GET", url: "/api/v1/stations", template: "/api/v1/stations"},
		{method: "GET", url: "/api/v1/devices?grid=110000", template: "/api/v1/devices", empty: []string{"devices"}},
		{method: "GET", url: "/api/v1/devices/sm-nb-ct", template: "/api/v1/devices/{id}"},
		{method: "GET", url: "/api/v1/nbiot/pending", template: "/api/v1/nbiot/pending", token: adminToken, empty: []string{"pending"}},
		{method: "GET", url: "/api/v1/uitds/inspections", template: "/api/v1/uitds/inspections"},
		{method: "GET", url: "/api/v1/uitds/010203040506/inspections", template: "/api/v1/uitds/{uitd}/inspections", empty: []string{"recent"}},
		{method: "GET", url: "/console/api/members", template: "/console/api/members", empty: []string{"members"}},
		{method: "GET", url: "/console/api/map", template: "/console/api/map"},
		{method: "GET", url: "/healthz", template: "/healthz"},
	} {
		if c.token == "" {
			c.token = viewerToken
		}
		if c.status == 0 {
			c.status = 200
		}
		do(c)
	}

	// One alarm: a CTWing smoke detector's alarm (nbiot_test.go), answered
	// once it is stored.
	do(apiCall{method: "POST", url: "/nbiot/ctwing/" + ctwingToken, template: "/nbiot/ctwing/{token}", body: ctwingSmoke, status: 200})
	top := do(apiCall{method: "GET", url: "/api/v1/alarms?device=sm-nb-ct", template: "/api/v1/alarms", token: viewerToken, status: 200})
	var list []struct{ ID string }
	if err := json.Unmarshal(top["alarms"], &list); err != nil || len(list) != 1 {
		t.Fatalf("alarms of sm-nb-ct: %s (%v)", top["alarms"], err)
	}
	id := list[0].ID
	do(apiCall{method: "GET", url: "/api/v1/alarms/" + id, template: "/api/v1/alarms/{id}", token: viewerToken, status: 200})
	do(apiCall{method: "POST", url: "/api/v1/alarms/" + id + "/acknowledge", template: "/api/v1/alarms/{id}/acknowledge", token: adminToken, body: `{"note":"值班员已确认"}`, status: 200})
	do(apiCall{method: "POST", url: "/api/v1/alarms/" + id + "/receipt", template: "/api/v1/alarms/{id}/receipt", token: adminToken, status: 200})
	do(apiCall{method: "POST", url: "/api/v1/alarms/" + id + "/arrive", template: "/api/v1/alarms/{id}/arrive", token: viewerToken, status: 403})
	do(apiCall{method: "GET", url: "/api/v1/digest?grid=450204002003&schedule=daily", template: "/api/v1/digest", token: viewerToken, status: 200})
}
