package gb45839

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/nbiottest"
)

const token = "p3Rr8sVb2nQ0"

func call(t *testing.T, u string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHandler(t *testing.T) {
	s := &nbiottest.Sink{}
	h := &Handler{Intake: nbiot.Intake{Submit: s.Submit, Count: s.Count, Dedupe: nbiot.NewDedupe(64)}, Token: token}
	mux := http.NewServeMux()
	mux.Handle("/nbiot/gb45839/", h)
	srv := httptest.NewServer(mux) // a real loopback TCP server
	defer srv.Close()
	base := srv.URL + "/nbiot/gb45839/" + token

	s.SetDown(true)
	if code, body := call(t, base+"/status_info", fixture(t, "status_alarm.json")); code != 503 || body != `{"success":0}` {
		t.Fatalf("submit down: %d %s", code, body)
	}
	s.SetDown(false)
	for range 2 { // the retry is taken, the second one is a duplicate
		if code, body := call(t, base+"/status_info", fixture(t, "status_alarm.json")); code != 200 || body != `{"success":1}` {
			t.Fatalf("status: %d %s", code, body)
		}
	}
	if code, body := call(t, base+"/Install_info", fixture(t, "install.json")); code != 200 || body != `{"success":1}` {
		t.Fatalf("install: %d %s", code, body)
	}
	for _, c := range []struct {
		path string
		body []byte
		code int
	}{
		{"/nbiot/gb45839/wrong/status_info", fixture(t, "status_alarm.json"), 404},
		{"/nbiot/gb45839/" + token + "/other", fixture(t, "status_alarm.json"), 404},
		{"/nbiot/gb45839/" + token + "/status_info", []byte(`{"serial":"x","status":2}`), 400},
		{"/nbiot/gb45839/" + token + "/status_info", []byte(`{`), 400},
	} {
		if code, _ := call(t, srv.URL+c.path, c.body); code != c.code {
			t.Errorf("%s: %d, want %d", c.path, code, c.code)
		}
	}
	got, counts := s.Snapshot()
	if len(got) != 2 || got[0].Type != nbiot.TypeStatus || got[1].Type != nbiot.TypeInstall {
		t.Errorf("submitted %+v", got)
	}
	want := map[string]int{"submit": 1, "accepted": 2, "duplicate": 1, "token": 1, "path": 1, "bad_device_id": 1, "malformed": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("count %s = %d, want %d (%v)", k, counts[k], v, counts)
		}
	}
}
