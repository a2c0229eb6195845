package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/responder"
)

// responderLedger is a small village with coordinates, a responsible
// person (contact) and phone, two hydrants near the smoke detector and one far away,
// and two stations (the second for re-dispatch). Stations push to url.
const responderLedger = `
places:
  "450204": 柳州市柳南区
  "450204101": 太阳村镇
  "450204101201": 山湾村
stations:
  - {id: st-shanwan, name: 山湾村微型消防站, grids: ["450204101201"], endpoint: "%[1]s/dispatch/st-shanwan", lat: 24.2600, lon: 109.3500}
  - {id: st-taiyang, name: 太阳村镇微型消防站, grids: ["450204101"], endpoint: "%[1]s/dispatch/st-taiyang", lat: 24.2700, lon: 109.3600}
devices:
  - {id: sm-1, kind: smoke, model: JTY-GD-NB, grid: "450204101201", address: 山湾村3组12号, lat: 24.2610, lon: 109.3510, unit: 山湾村委会, phone: "13800001234", contact: 韦建国}
  - {id: sm-2, kind: smoke, model: JTY-GD-NB, grid: "450204101201", address: 山湾村3组14号, lat: 24.2612, lon: 109.3512, unit: 山湾村委会}
  - {id: hy-1, kind: hydrant, model: PT-100, grid: "450204101201", address: 山湾村口, lat: 24.2620, lon: 109.3515, unit: 柳南区水务}
  - {id: hy-2, kind: hydrant, model: PT-100, grid: "450204101201", address: 山湾村晒场, lat: 24.2590, lon: 109.3490, unit: 柳南区水务}
  - {id: hy-far, kind: hydrant, model: PT-100, grid: "450204101201", address: 远处, lat: 24.4000, lon: 109.5000, unit: 柳南区水务}
`

// responderService runs firewatch with responderLedger, API tokens and
// no storm grouping, and returns it with a bridge client that publishes
// for the devices.
func responderService(t *testing.T, rcv *receiver, tune func(*Config)) (*service, paho.Client) {
	t.Helper()
	s, url, secret := embeddedService(t, rcv, func(c *Config) {
		path := filepath.Join(t.TempDir(), "ledger.yaml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(responderLedger, rcv.URL)), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Ledger = path
		c.Alarms.StormWindow = 0 // no storm grouping: each alarm its own push
		c.HTTP.Tokens = "duty:operator:operator-secret-0123456789,watch:viewer:viewer-secret-0123456789"
		if tune != nil {
			tune(c)
		}
	})
	return s, mqttClient(t, url, "bridge", "bridge", secret)
}

// raiseSmoke publishes a smoke alarm of dev and returns its raised push to
// the station.
func raiseSmoke(t *testing.T, rcv *receiver, c paho.Client, dev string, seq int) map[string]any {
	t.Helper()
	publish(t, c, "fw/v1/up/"+dev+"/event", fmt.Sprintf(`{"ts":%d,"seq":%d,"event":"smoke_alarm"}`, time.Now().UnixMilli(), seq))
	p, _ := rcv.nextPush(t, 20*time.Second, "raised push of "+dev, func(b map[string]any) bool {
		d, _ := b["device"].(map[string]any)
		return b["transition"] == "raised" && d["id"] == dev
	})
	return p
}

// linkOf splits a push's responder link into the page URL and the token
// of its fragment.
func linkOf(t *testing.T, p map[string]any) (page, token string) {
	t.Helper()
	link, _ := p["responder_url"].(string)
	page, token, ok := strings.Cut(link, "#t=")
	if !ok || token == "" {
		t.Fatalf("push %v has no responder link with a token in its fragment: %q", p["idempotency_key"], link)
	}
	if msg, _ := p["message"].(string); !strings.HasSuffix(msg, "一键处置："+link) {
		t.Errorf("the push message does not end with the link: %q", msg)
	}
	return page, token
}

type linkResp struct {
	status int
	body   map[string]any
}

// linkCall makes one request to a responder endpoint with token.
func linkCall(t *testing.T, method, url, token, body string, hdr ...string) linkResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Responder-Token", token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return linkResp{resp.StatusCode, m}
}

// apiAlarm reads an alarm through the API with the viewer token.
func apiAlarm(t *testing.T, s *service, id string) alarms.Alarm {
	t.Helper()
	req, _ := http.NewRequest("GET", s.httpURL()+"/api/v1/alarms/"+id, nil)
	req.Header.Set("Authorization", "Bearer viewer-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a alarms.Alarm
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestResponderLinks: the raised push carries a link for its alarm and
// station; expired, tampered or foreign links are refused and counted; a
// tap moves the alarm and is recorded with the person's name; a replayed
// tap changes nothing; writes need JSON from our own origin.
func TestResponderLinks(t *testing.T) {
	rcv := newReceiver(t)
	s, c := responderService(t, rcv, nil)
	p1 := raiseSmoke(t, rcv, c, "sm-1", 1)
	p2 := raiseSmoke(t, rcv, c, "sm-2", 1)
	page1, tok1 := linkOf(t, p1)
	_, tok2 := linkOf(t, p2)
	id1 := p1["alarm_id"].(string)
	if want := s.httpURL() + "/r/" + id1; page1 != want {
		t.Errorf("page %s, want %s", page1, want)
	}

	// The page itself needs no token (it is in the fragment).
	if r := linkCall(t, "GET", page1, "", ""); r.status != 200 {
		t.Fatalf("page: %d", r.status)
	}
	st := linkCall(t, "GET", page1+"/state", tok1, "")
	if st.status != 200 {
		t.Fatalf("state: %d %v", st.status, st.body)
	}
	dev := st.body["device"].(map[string]any)
	if dev["phone"] != "13800001234" || dev["contact"] != "韦建国" || dev["address"] != "山湾村3组12号" || st.body["you"].(map[string]any)["id"] != "st-shanwan" {
		t.Errorf("state device %v you %v", dev, st.body["you"])
	}
	hy := st.body["hydrants"].([]any)
	if len(hy) != 2 || hy[0].(map[string]any)["id"] != "hy-1" || hy[1].(map[string]any)["id"] != "hy-2" {
		t.Errorf("hydrants %v: want hy-1 then hy-2, not the far one", hy)
	}
	if nav, _ := st.body["nav"].(map[string]any); !strings.HasPrefix(nav["amap"].(string), "https://uri.amap.com/marker?position=109.351000,24.261000") {
		t.Errorf("nav %v", nav)
	}

	// Refused links, each counted by reason.
	parts := strings.Split(tok1, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	for _, c := range []struct {
		name, url, token, reason string
	}{
		{"another alarm's link", page1 + "/state", tok2, "other_alarm"},
		{"tampered", page1 + "/state", tampered, "bad_signature"},
		{"no token", page1 + "/state", "", "missing"},
		{"tap with another alarm's link", page1 + "/tap", tok2, "other_alarm"},
	} {
		method, body := "GET", ""
		if strings.HasSuffix(c.url, "/tap") {
			method, body = "POST", `{"action":"ack","name":"张三"}`
		}
		before := metric(t, s, `firewatch_responder_links_refused_total{reason="`+c.reason+`"}`)
		if r := linkCall(t, method, c.url, c.token, body); r.status != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", c.name, r.status)
		}
		if after := metric(t, s, `firewatch_responder_links_refused_total{reason="`+c.reason+`"}`); after != before+1 {
			t.Errorf("%s: refused{%s} %v → %v", c.name, c.reason, before, after)
		}
	}
	if a := apiAlarm(t, s, id1); a.State == alarms.StateAcknowledged {
		t.Fatal("a refused tap moved the alarm")
	}

	// CSRF: a form post (no JSON) and a request from another origin.
	if r := linkCall(t, "POST", page1+"/tap", tok1, "action=ack&name=x", "Content-Type", "application/x-www-form-urlencoded"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("form post: %d", r.status)
	}
	if r := linkCall(t, "POST", page1+"/tap", tok1, `{"action":"ack","name":"张三"}`, "Origin", "https://evil.example"); r.status != http.StatusForbidden {
		t.Errorf("foreign origin: %d", r.status)
	}

	// A tap, then the same tap again (a replay): one transition.
	ack := `{"action":"ack","name":"张三"}`
	if r := linkCall(t, "POST", page1+"/tap", tok1, ack); r.status != 200 || r.body["noop"] != nil {
		t.Fatalf("ack: %d %v", r.status, r.body)
	}
	if r := linkCall(t, "POST", page1+"/tap", tok1, ack); r.status != 200 || r.body["noop"] != true {
		t.Errorf("replayed ack: %d %v, want a no-op", r.status, r.body)
	}
	// Out of order: 到场 before 出动.
	if r := linkCall(t, "POST", page1+"/tap", tok1, `{"action":"arrive","name":"张三"}`); r.status != http.StatusConflict {
		t.Errorf("arrive before dispatch: %d", r.status)
	}
	a := apiAlarm(t, s, id1)
	n := 0
	for _, h := range a.History {
		if h.To == alarms.StateAcknowledged && h.From != h.To {
			n++
			if h.Actor != "张三@st-shanwan" {
				t.Errorf("actor %q", h.Actor)
			}
		}
	}
	if a.State != alarms.StateAcknowledged || n != 1 {
		t.Errorf("state %s with %d acknowledgements, want acknowledged once", a.State, n)
	}
	if r := linkCall(t, "POST", page1+"/tap", tok1, `{"action":"close","name":"张三","cause":"maybe"}`); r.status != http.StatusBadRequest {
		t.Errorf("unknown cause: %d", r.status)
	}
	// 真实火情 needs 到场 once dispatched (the lifecycle): refused with a hint.
	if r := linkCall(t, "POST", page1+"/tap", tok1, `{"action":"dispatch","name":"张三"}`); r.status != 200 {
		t.Fatalf("dispatch: %d %v", r.status, r.body)
	}
	if r := linkCall(t, "POST", page1+"/tap", tok1, `{"action":"close","name":"张三","cause":"fire"}`); r.status != http.StatusConflict ||
		!strings.Contains(fmt.Sprint(r.body["error"]), "请先点击“到场”") {
		t.Errorf("fire closed while dispatched: %d %v", r.status, r.body["error"])
	}
}

// TestResponderLinkExpires: a link older than its TTL is refused and
// counted as expired.
func TestResponderLinkExpires(t *testing.T) {
	rcv := newReceiver(t)
	s, c := responderService(t, rcv, nil)
	p := raiseSmoke(t, rcv, c, "sm-1", 1)
	page, _ := linkOf(t, p)
	// A token made with firewatch's own key (alarms.secret) that expired a second ago.
	signer := responder.NewSigner(s.httpURL(), 0, []byte(e2eSecret))
	expired := signer.Token(responder.Claims{Alarm: p["alarm_id"].(string), Station: "st-shanwan", Expires: time.Now().Add(-time.Second)})
	before := metric(t, s, `firewatch_responder_links_refused_total{reason="expired"}`)
	r := linkCall(t, "GET", page+"/state", expired, "")
	if r.status != http.StatusForbidden || !strings.Contains(fmt.Sprint(r.body["error"]), "过期") {
		t.Errorf("expired link: %d %v", r.status, r.body)
	}
	if after := metric(t, s, `firewatch_responder_links_refused_total{reason="expired"}`); after != before+1 {
		t.Errorf("expired refusals %v → %v", before, after)
	}
}

// TestResponderRateLimit: one address gets its burst, then 429s, counted.
func TestResponderRateLimit(t *testing.T) {
	rcv := newReceiver(t)
	s, c := responderService(t, rcv, nil)
	p := raiseSmoke(t, rcv, c, "sm-1", 1)
	page, tok := linkOf(t, p)
	limited := 0
	for range 80 {
		if r := linkCall(t, "GET", page+"/state", tok, ""); r.status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 || metric(t, s, "firewatch_responder_rate_limited_total") != float64(limited) {
		t.Errorf("%d of 80 requests limited, metric %v", limited, metric(t, s, "firewatch_responder_rate_limited_total"))
	}
}

// consoleCall makes a console API request with a bearer token.
func consoleCall(t *testing.T, method, url, bearer, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestConsoleAPI: re-dispatch needs an operator, a known station and an
// open alarm; the 考核 CSV is UTF-8 with a BOM and a row per station.
func TestConsoleAPI(t *testing.T) {
	rcv := newReceiver(t)
	s, c := responderService(t, rcv, nil)
	p := raiseSmoke(t, rcv, c, "sm-1", 1)
	id := p["alarm_id"].(string)
	u := s.httpURL() + "/console/api/alarms/" + id + "/redispatch"
	const op, viewer = "operator-secret-0123456789", "viewer-secret-0123456789"
	for _, c := range []struct {
		name, bearer, body string
		want               int
	}{
		{"no token", "", `{"station":"st-taiyang"}`, 401},
		{"viewer", viewer, `{"station":"st-taiyang"}`, 403},
		{"unknown station", op, `{"station":"st-nowhere"}`, 400},
		{"bad body", op, `{"station":1}`, 400},
		{"unknown alarm", op, `{"station":"st-taiyang"}`, 0},
	} {
		url := u
		if c.want == 0 {
			url, c.want = s.httpURL()+"/console/api/alarms/alm-999999/redispatch", 404
		}
		if code, body := consoleCall(t, "POST", url, c.bearer, c.body); code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
	}
	if code, body := consoleCall(t, "POST", u, op, `{"station":"st-taiyang","note":"山湾村站人员外出"}`); code != 200 {
		t.Fatalf("redispatch: %d %s", code, body)
	}
	// Again to the same station: nothing new.
	if code, _ := consoleCall(t, "POST", u, op, `{"station":"st-taiyang"}`); code != 200 {
		t.Errorf("redispatch to the alarm's own station: %d", code)
	}
	a := apiAlarm(t, s, id)
	n := 0
	for _, h := range a.History {
		if strings.HasPrefix(h.Note, "改派至") {
			n++
			if h.Note != "改派至 太阳村镇微型消防站（原 山湾村微型消防站）：山湾村站人员外出" {
				t.Errorf("note %q", h.Note)
			}
		}
	}
	if n != 1 || a.Station != "st-taiyang" {
		t.Errorf("station %s after %d redispatches, want st-taiyang once", a.Station, n)
	}
	page, tok := linkOf(t, p)
	if r := linkCall(t, "POST", page+"/tap", tok, `{"action":"close","name":"张三","cause":"test"}`); r.status != 200 {
		t.Fatalf("close: %d %v", r.status, r.body)
	}
	if code, _ := consoleCall(t, "POST", u, op, `{"station":"st-shanwan"}`); code != http.StatusConflict {
		t.Errorf("redispatch of a closed alarm: %d, want 409", code)
	}

	code, csv := consoleCall(t, "GET", s.httpURL()+"/console/api/stats.csv?grid=450204", viewer, "")
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if code != 200 || !strings.HasPrefix(csv, "\ufeff微型消防站,站点编号,所属街道/乡镇,报警数") || len(lines) != 3 ||
		!strings.HasPrefix(lines[2], "太阳村镇微型消防站,st-taiyang,太阳村镇,1,0,") {
		t.Errorf("CSV %d:\n%s", code, csv)
	}
	if code, _ := consoleCall(t, "GET", s.httpURL()+"/console/api/stats.csv?since=yesterday", viewer, ""); code != 400 {
		t.Errorf("bad since: %d", code)
	}
}

// TestResponderLinkOfEscalation: a station asked for help by an escalation
// gets a link of its own: its member's tap is recorded for that station,
// not for the station the alarm first went to.
func TestResponderLinkOfEscalation(t *testing.T) {
	rcv := newReceiver(t)
	s, c := responderService(t, rcv, func(c *Config) { c.Alarms.RespondWithin = time.Second })
	p := raiseSmoke(t, rcv, c, "sm-1", 1)
	esc, _ := rcv.nextPush(t, 20*time.Second, "escalation to the town's station", func(b map[string]any) bool {
		st, _ := b["station"].(map[string]any)
		return b["alarm_id"] == p["alarm_id"] && b["transition"] == "escalated" && st["id"] == "st-taiyang"
	})
	page, tok := linkOf(t, esc)
	if r := linkCall(t, "POST", page+"/tap", tok, `{"action":"ack","name":"王五"}`); r.status != 200 {
		t.Fatalf("ack: %d %v", r.status, r.body)
	}
	for _, h := range apiAlarm(t, s, p["alarm_id"].(string)).History {
		if h.To == alarms.StateAcknowledged && h.Actor != "王五@st-taiyang" {
			t.Errorf("acknowledged by %q, want 王五@st-taiyang", h.Actor)
		}
	}
}
