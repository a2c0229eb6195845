package ctwing

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/nbiottest"
)

const token = "Zk3q9T0mW1xYp7Lr"

func server(t *testing.T) (*httptest.Server, *nbiottest.Sink) {
	s := &nbiottest.Sink{Platform: nbiot.PlatformCTWing}
	h := &Handler{
		Intake:   nbiot.Intake{Submit: s.Submit, Count: s.Count, Dedupe: nbiot.NewDedupe(64), MaxBody: 4096},
		Token:    token,
		Tenants:  []string{"2000033629"},
		Products: []string{"15114816", "15298770"},
	}
	mux := http.NewServeMux()
	mux.Handle("/nbiot/ctwing/", h)
	srv := httptest.NewServer(mux) // a real loopback TCP server
	t.Cleanup(srv.Close)
	return srv, s
}

func post(t *testing.T, url string, body []byte) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHandlerDeliversOnceAndRetries(t *testing.T) {
	srv, s := server(t)
	url := srv.URL + "/nbiot/ctwing/" + token
	body := fixture(t, "data_thingmodel.json")

	s.SetDown(true)
	if code := post(t, url, body); code != http.StatusServiceUnavailable {
		t.Fatalf("submit down: %d, want 503", code)
	}
	s.SetDown(false)
	// CTWing's retry is taken, and a second retry is a duplicate.
	for range 2 {
		if code := post(t, url, body); code != http.StatusOK {
			t.Fatalf("retry: %d", code)
		}
	}
	n, c := s.Tally()
	if n != 1 || c["submit"] != 1 || c["accepted"] != 1 || c["duplicate"] != 1 {
		t.Errorf("submitted %d, counts %v", n, c)
	}
	for _, f := range []string{"data_passthrough.json", "online.json", "event.json", "command.json"} {
		if code := post(t, url, fixture(t, f)); code != http.StatusOK {
			t.Errorf("%s: %d", f, code)
		}
	}
	if n, _ := s.Tally(); n != 5 {
		t.Errorf("submitted %d, want 5", n)
	}
}

func TestHandlerRefuses(t *testing.T) {
	srv, s := server(t)
	good := fixture(t, "data_passthrough.json")
	for _, c := range []struct {
		name, path, method string
		body               []byte
		code               int
		reason             string
	}{
		{"wrong token", "/nbiot/ctwing/Zk3q9T0mW1xYp7Ls", "POST", good, 404, "token"},
		{"no token", "/nbiot/ctwing/", "POST", good, 404, "token"},
		{"get", "/nbiot/ctwing/" + token, "GET", nil, 405, "method"},
		{"too large", "/nbiot/ctwing/" + token, "POST", bytes.Repeat([]byte(" "), 5000), 413, "too_large"},
		{"malformed", "/nbiot/ctwing/" + token, "POST", []byte(`{"messageType":`), 400, "malformed"},
		{"bad payload", "/nbiot/ctwing/" + token, "POST", []byte(`{"messageType":"dataReport","deviceId":"d","tenantId":"2000033629","payload":{"APPdata":"%%"}}`), 400, "bad_payload"},
		{"other tenant", "/nbiot/ctwing/" + token, "POST", bytes.Replace(good, []byte("2000033629"), []byte("2000099999"), 1), 403, "tenant"},
		{"other product", "/nbiot/ctwing/" + token, "POST", bytes.Replace(good, []byte("15114816"), []byte("15114817"), 1), 403, "product"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, bytes.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		_, counts := s.Tally()
		if resp.StatusCode != c.code || counts[c.reason] != 1 {
			t.Errorf("%s: %d (want %d), counts %v", c.name, resp.StatusCode, c.code, counts)
		}
		s.ResetCounts()
	}
	if n, _ := s.Tally(); n != 0 {
		t.Errorf("%d refused pushes submitted", n)
	}
}

func TestHandlerValidate(t *testing.T) {
	ok := &Handler{Intake: nbiot.Intake{Submit: (&nbiottest.Sink{}).Submit}, Token: token, Tenants: []string{"1"}, Products: []string{"2"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]Handler{
		"no submit":   {Token: token, Tenants: []string{"1"}, Products: []string{"2"}},
		"short token": {Intake: ok.Intake, Token: "abc", Tenants: []string{"1"}, Products: []string{"2"}},
		"no tenants":  {Intake: ok.Intake, Token: token, Products: []string{"2"}},
		"no products": {Intake: ok.Intake, Token: token, Tenants: []string{"1"}},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// An unconfigured product list refuses every push, it does not allow all.
	s := &nbiottest.Sink{Platform: nbiot.PlatformCTWing}
	srv := httptest.NewServer(&Handler{Intake: nbiot.Intake{Submit: s.Submit, Count: s.Count}, Token: token, Tenants: []string{"2000033629"}})
	defer srv.Close()
	if code := post(t, srv.URL+"/"+token, fixture(t, "data_passthrough.json")); code != http.StatusForbidden {
		t.Errorf("empty product list: %d", code)
	}
}
