package onenet

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/nbiottest"
)

func server(t *testing.T, cfg Config) (string, *nbiottest.Sink) {
	s := &nbiottest.Sink{}
	h := &Handler{Intake: nbiot.Intake{Submit: s.Submit, Count: s.Count, Dedupe: nbiot.NewDedupe(64)}, Config: cfg}
	srv := httptest.NewServer(h) // a real loopback TCP server
	t.Cleanup(srv.Close)
	return srv.URL + "/nbiot/onenet/push", s
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, u string, body []byte) int {
	t.Helper()
	resp, err := http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHandlerVerification(t *testing.T) {
	u, s := server(t, plainCfg)
	q := url.Values{"msg": {"8fa0c1"}, "nonce": {"Xy12Ab"}, "signature": {"Mx7yvZh+aKDzE1LZp8UnKg=="}}
	code, body := get(t, u+"?"+q.Encode())
	if code != 200 || body != "8fa0c1" {
		t.Fatalf("%d %q, want 200 and the msg alone", code, body)
	}
	// The '+' left unescaped, as a careless URL builder sends it.
	code, body = get(t, u+"?msg=8fa0c1&nonce=Xy12Ab&signature=Mx7yvZh+aKDzE1LZp8UnKg==")
	if code != 200 || body != "8fa0c1" {
		t.Errorf("unescaped plus: %d %q", code, body)
	}
	q.Set("signature", "AAAAAAAAAAAAAAAAAAAAAA==")
	if code, body = get(t, u+"?"+q.Encode()); code != 403 || strings.Contains(body, "8fa0c1") {
		t.Errorf("bad signature: %d %q", code, body)
	}
	if _, c := s.Tally(); c["verified"] != 2 || c["signature"] != 1 {
		t.Errorf("counts %v", c)
	}
}

func TestHandlerPosts(t *testing.T) {
	u, s := server(t, aesCfg)
	s.SetDown(true)
	if code := post(t, u, fixture(t, "legacy_batch.json")); code != 503 {
		t.Fatalf("submit down: %d", code)
	}
	s.SetDown(false)
	for _, f := range []string{"legacy_batch.json", "legacy_batch.json", "legacy_datapoint.json", "studio_plain.json", "studio_aes.json"} {
		if code := post(t, u, fixture(t, f)); code != 200 {
			t.Errorf("%s: %d", f, code)
		}
	}
	n, c := s.Tally()
	if n != 5 || c["duplicate"] != 2 || c["submit"] != 1 {
		t.Errorf("submitted %d, counts %v", n, c)
	}
	tampered := bytes.Replace(fixture(t, "legacy_datapoint.json"), []byte(`"value":1`), []byte(`"value":0`), 1)
	if code := post(t, u, tampered); code != 403 {
		t.Errorf("tampered: %d", code)
	}
	if code := post(t, u, []byte(`{"msg":`)); code != 400 {
		t.Errorf("malformed: %d", code)
	}
	if code := post(t, u, bytes.Repeat([]byte("x"), nbiot.DefaultMaxBody+1)); code != 413 {
		t.Errorf("too large: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPut, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, c = s.Tally()
	if resp.StatusCode != 405 || n != 5 || c["signature"] != 1 || c["malformed"] != 1 || c["too_large"] != 1 || c["method"] != 1 {
		t.Errorf("put %d, submitted %d, counts %v", resp.StatusCode, n, c)
	}
}
