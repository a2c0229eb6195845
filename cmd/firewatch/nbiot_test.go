package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

// nbiotLedger is the test ledger plus NB-IoT detectors bound by IMEI
// (CTWing) and by OneNET dev_id, both with the thing-model smoke codec.
func nbiotLedger(t *testing.T, rcvURL string) string {
	t.Helper()
	b, err := os.ReadFile(writeLedger(t, rcvURL))
	if err != nil {
		t.Fatal(err)
	}
	extra := `
  - id: sm-nb-ct
    kind: smoke
    grid: "450204002003"
    address: 鹅山路20号
    nbiot: {imei: "869975031234568", product: NB-SMOKE-TM, responsible: 韦建国, mobile: "13800000000"}
  - id: sm-nb-on
    kind: smoke
    grid: "450204002003"
    address: 鹅山路22号
    nbiot: {platform_id: "523456791", product: NB-SMOKE-TM}
  - id: sm-nb-gb
    kind: smoke
    grid: "450204002003"
    address: 鹅山路24号
    nbiot: {serial: "ABCD01250601SN00000010A1F2E"}
`
	path := filepath.Join(t.TempDir(), "ledger-nbiot.yaml")
	if err := os.WriteFile(path, append(b, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	ctwingToken  = "ct-0123456789abcdef"
	onenetToken  = "fw-onenet-token-2026"
	gb45839Token = "gb-peer-0123456789"
	adminToken   = "admin-token-0123456789abcdef"
	viewerToken  = "viewer-token-0123456789abcdef"
)

// getAs GETs url with a bearer token and decodes the JSON answer into v;
// it returns the status.
func getAs(t *testing.T, token, url string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func nbiotService(t *testing.T, rcv *receiver, tune func(*Config)) *service {
	t.Helper()
	s, _, _ := embeddedService(t, rcv, func(c *Config) {
		c.Ledger = nbiotLedger(t, rcv.URL)
		c.NBIoT.CTWing.Token, c.NBIoT.CTWing.Tenants, c.NBIoT.CTWing.Products = ctwingToken, "2000033629", "15298770"
		c.NBIoT.OneNET.Token = onenetToken
		c.NBIoT.GB45839.Token = gb45839Token
		c.HTTP.Tokens = "ops:admin:" + adminToken + ",duty:viewer:" + viewerToken
		c.Alarms.StormWindow = 0 // alarms of one station close together: a push each, not an incident
		if tune != nil {
			tune(c)
		}
	})
	return s
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// alarmsOf lists the stored alarms of a device through the API.
func alarmsOf(t *testing.T, s *service, dev string) []map[string]any {
	t.Helper()
	var out struct{ Alarms []map[string]any }
	if code := getAs(t, viewerToken, s.httpURL()+"/api/v1/alarms?device="+dev, &out); code != 200 {
		t.Fatalf("alarms of %s: %d", dev, code)
	}
	return out.Alarms
}

func firePush(dev string) func(map[string]any) bool {
	return func(b map[string]any) bool {
		d, _ := b["device"].(map[string]any)
		return b["rule"] == "smoke.smoke_alarm" && b["transition"] == "raised" && d["id"] == dev
	}
}

// A CTWing thing-model dataReport (fields as captured from public
// receivers, docs/nbiot.md), written by hand: Alarm_Status 1 is smoke.
const ctwingSmoke = `{"upPacketSN":"","upDataSN":17,"topic":"v1/up/ad19","timestamp":1796118000000,"tenantId":"2000033629",` +
	`"serviceId":1,"protocol":"lwm2m","productId":"15298770","messageType":"dataReport","deviceType":"",` +
	`"deviceId":"15298770869975031234568","assocAssetId":"","IMEI":"869975031234568","IMSI":"460111234567890",` +
	`"payload":{"serviceId":"notification","serviceData":{"Alarm_Status":1,"Battery_Level":87,"RSRP":-95,"SNR":6}}}`

// A OneNET push of one data point, plain mode: msg as a JSON string, its
// signature Base64(MD5(token+nonce+msg)) computed with openssl:
//
//	printf '%s' 'fw-onenet-token-2026n0nce8Xy{"type":1,...}' | openssl md5 -binary | base64
const (
	onenetMsg   = `{"type":1,"dev_id":523456791,"ds_id":"Alarm_Status","at":1796118000000,"value":1}`
	onenetSig   = "zgO2PTPIBVqjQ7SlKJMl7Q=="
	onenetNonce = "n0nce8Xy"
)

func onenetBody(msg, sig, nonce string) string {
	m, _ := json.Marshal(msg)
	return `{"id":"7a1c","time":1796118000100,"msg":` + string(m) + `,"signature":"` + sig + `","nonce":"` + nonce + `"}`
}

// TestNBIoTEndToEnd: smoke alarms pushed by CTWing and OneNET reach the
// dispatch receiver as fire alarms; each push is answered 200 only once
// its alarm is stored; a retried push raises nothing new; a forged OneNET
// push is refused and counted; an unknown detector and a GB/T 45839
// Install_info become pending entries for an administrator.
func TestNBIoTEndToEnd(t *testing.T) {
	rcv := newReceiver(t)
	s := nbiotService(t, rcv, nil)
	base := s.httpURL()

	// CTWing: 200, and the alarm is already in the store when it comes.
	if code, body := post(t, base+"/nbiot/ctwing/"+ctwingToken, ctwingSmoke); code != 200 {
		t.Fatalf("ctwing push: %d %s", code, body)
	}
	if a := alarmsOf(t, s, "sm-nb-ct"); len(a) != 1 || a[0]["rule"] != "smoke.smoke_alarm" {
		t.Fatalf("alarms of sm-nb-ct right after the 200: %v", a)
	}
	rcv.nextPush(t, 10*time.Second, "fire push of the CTWing detector", firePush("sm-nb-ct"))

	// The platform retries the same push (it missed our answer): taken, not raised again.
	if code, body := post(t, base+"/nbiot/ctwing/"+ctwingToken, ctwingSmoke); code != 200 {
		t.Fatalf("ctwing retry: %d %s", code, body)
	}
	// A wrong path token is not found; a foreign tenant is refused.
	if code, _ := post(t, base+"/nbiot/ctwing/not-the-token-0000", ctwingSmoke); code != 404 {
		t.Errorf("wrong path token: %d", code)
	}
	if code, _ := post(t, base+"/nbiot/ctwing/"+ctwingToken, strings.Replace(ctwingSmoke, "2000033629", "2000099999", 1)); code != 403 {
		t.Errorf("foreign tenant: %d", code)
	}

	// OneNET: the URL verification answers msg alone.
	q := url.Values{"msg": {"c0ffee42"}, "nonce": {"vErIfY01"}, "signature": {"4/aAfr7pvDblQcFANvhDrQ=="}}
	resp, err := http.Get(base + "/nbiot/onenet?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "c0ffee42" {
		t.Errorf("onenet verification: %d %q", resp.StatusCode, b)
	}
	// A push whose signature does not match (forged, or another token) is refused.
	if code, _ := post(t, base+"/nbiot/onenet", onenetBody(onenetMsg, "AAAAAAAAAAAAAAAAAAAAAA==", onenetNonce)); code != 403 {
		t.Errorf("bad signature: %d, want 403", code)
	}
	if a := alarmsOf(t, s, "sm-nb-on"); len(a) != 0 {
		t.Fatalf("a forged push raised %v", a)
	}
	if code, body := post(t, base+"/nbiot/onenet", onenetBody(onenetMsg, onenetSig, onenetNonce)); code != 200 {
		t.Fatalf("onenet push: %d %s", code, body)
	}
	if a := alarmsOf(t, s, "sm-nb-on"); len(a) != 1 {
		t.Fatalf("alarms of sm-nb-on right after the 200: %v", a)
	}
	rcv.nextPush(t, 10*time.Second, "fire push of the OneNET detector", firePush("sm-nb-on"))

	// A GB/T 45839 peer's status_info: status 2 is a fire alarm.
	status := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":2,"signalStrength":-99,"batteryPercentage":76,"datetime":"` +
		time.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02 15:04:05") + `"}`
	if code, body := post(t, base+"/nbiot/gb45839/"+gb45839Token+"/status_info", status); code != 200 || body != `{"success":1}` {
		t.Fatalf("status_info: %d %s", code, body)
	}
	if a := alarmsOf(t, s, "sm-nb-gb"); len(a) != 1 || a[0]["rule"] != "smoke.smoke_alarm" {
		t.Fatalf("alarms of sm-nb-gb right after the answer: %v", a)
	}
	rcv.nextPush(t, 10*time.Second, "fire push of the GB/T 45839 detector", firePush("sm-nb-gb"))

	// An unknown detector, and a GB/T 45839 Install_info: pending entries.
	unknown := strings.ReplaceAll(ctwingSmoke, "869975031234568", "869975039999999")
	if code, body := post(t, base+"/nbiot/ctwing/"+ctwingToken, unknown); code != 200 {
		t.Fatalf("unknown device push: %d %s", code, body)
	}
	install := `{"company":"ABCD","serial":"ABCD01250601SN0000001` + "0A" + `1F2E","name":"独立式感烟火灾探测报警器",` +
		`"categoryName":"感烟","netType":"NB-IoT","client":"鹅山村委会","address":"柳南区鹅山村","deviceAddress":"鹅山路30号二楼",` +
		`"productingDate":"2025-06-01","longitude":109.4,"latitude":24.3,"activeTime":"2026-11-30 10:00:00",` +
		`"organizationName":"潭西街道","area":"450204002003","responsible":"覃秀兰","mobile":"13900000000"}`
	if code, body := post(t, base+"/nbiot/gb45839/"+gb45839Token+"/Install_info", install); code != 200 || body != `{"success":1}` {
		t.Fatalf("Install_info: %d %s", code, body)
	}
	var pend struct{ Pending []map[string]any }
	if code := getAs(t, viewerToken, base+"/api/v1/nbiot/pending", nil); code != 403 {
		t.Errorf("pending entries to a viewer: %d, want 403 (admins only)", code)
	}
	if code := getAs(t, adminToken, base+"/api/v1/nbiot/pending", &pend); code != 200 {
		t.Fatalf("pending entries: %d", code)
	}
	if len(pend.Pending) != 2 || pend.Pending[0]["imei"] != "869975039999999" || pend.Pending[0]["platform"] != "ctwing" {
		t.Fatalf("pending: %v", pend.Pending)
	}
	if in, _ := pend.Pending[1]["install"].(map[string]any); in["deviceAddress"] != "鹅山路30号二楼" || in["mobile"] != "13900000000" {
		t.Errorf("pending install: %v", pend.Pending[1])
	}

	m := scrape(t, base+"/metrics")
	for k, want := range map[string]float64{
		`firewatch_nbiot_requests_total{outcome="accepted",platform="ctwing"}`:     2,
		`firewatch_nbiot_requests_total{outcome="duplicate",platform="ctwing"}`:    1,
		`firewatch_nbiot_requests_total{outcome="token",platform="ctwing"}`:        1,
		`firewatch_nbiot_requests_total{outcome="tenant",platform="ctwing"}`:       1,
		`firewatch_nbiot_requests_total{outcome="signature",platform="onenet"}`:    1,
		`firewatch_nbiot_requests_total{outcome="verified",platform="onenet"}`:     1,
		`firewatch_nbiot_reports_total{platform="ctwing",result="delivered"}`:      1,
		`firewatch_nbiot_reports_total{platform="ctwing",result="unknown_device"}`: 1,
		`firewatch_nbiot_reports_total{platform="onenet",result="delivered"}`:      1,
		`firewatch_nbiot_reports_total{platform="gb45839",result="install"}`:       1,
		`firewatch_nbiot_pending_devices`:                                          2,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	// The retry raised nothing: one fire alarm per detector, one push each.
	if a := alarmsOf(t, s, "sm-nb-ct"); len(a) != 1 {
		t.Errorf("alarms of sm-nb-ct after the retry: %d", len(a))
	}
	n := 0
	for _, p := range rcv.all() {
		if firePush("sm-nb-ct")(p.body) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d fire pushes of sm-nb-ct, want 1", n)
	}
}

// TestNBIoTLost: a bound detector silent for nbiot.lost_within (short
// here; GB/T 45839's 24 h by default) is raised offline although its
// heartbeat × missed is 48 h; a platform push is proof of life and clears
// it.
func TestNBIoTLost(t *testing.T) {
	rcv := newReceiver(t)
	s := nbiotService(t, rcv, func(c *Config) {
		c.Liveness.Tick = 100 * time.Millisecond
		c.NBIoT.LostWithin = time.Second
	})
	offline := func(transition string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			d, _ := b["device"].(map[string]any)
			return b["severity"] == "offline" && b["transition"] == transition && d["id"] == "sm-nb-ct"
		}
	}
	rcv.nextPush(t, 15*time.Second, "offline push of the silent detector", offline("raised"))
	// A push of a report from before it went silent (the fixture's
	// timestamp, hours ago: a platform's retry) says nothing of now; a
	// report of now clears it (issue 14: counted at its device time).
	normal := strings.Replace(ctwingSmoke, `"Alarm_Status":1`, `"Alarm_Status":0`, 1)
	if code, body := post(t, s.httpURL()+"/nbiot/ctwing/"+ctwingToken, normal); code != 200 {
		t.Fatalf("ctwing push: %d %s", code, body)
	}
	if d, _ := s.ledger.LookupID("sm-nb-ct"); s.live.Status(d.Index).Online {
		t.Error("a retried report of hours ago revived the detector")
	}
	fresh := strings.Replace(strings.Replace(normal, `"timestamp":1796118000000`, fmt.Sprintf(`"timestamp":%d`, time.Now().UnixMilli()), 1), `"upDataSN":17`, `"upDataSN":18`, 1)
	if code, body := post(t, s.httpURL()+"/nbiot/ctwing/"+ctwingToken, fresh); code != 200 {
		t.Fatalf("ctwing push: %d %s", code, body)
	}
	rcv.nextPush(t, 10*time.Second, "offline cleared by the push", offline("cleared"))
	for _, p := range rcv.all() {
		if d, _ := p.body["device"].(map[string]any); d["id"] == "sm-1" && p.body["severity"] == "offline" {
			t.Errorf("an unbound smoke detector (48 h grace) went offline: %v", p.body)
		}
	}
}

// TestNBIoTSimulators: the firmware-sim emulators' pushes, OneNET in secure
// (AES) mode, raise fire alarms through a running firewatch.
func TestNBIoTSimulators(t *testing.T) {
	rcv := newReceiver(t)
	const aesKey = "ABCDEFGHIJKLMNOP"
	s := nbiotService(t, rcv, func(c *Config) { c.NBIoT.OneNET.AESKey = aesKey })
	base := s.httpURL()
	now := time.Now()
	ct := sim.CTWingDataReport("2000033629", "15298770", "15298770869975031234568", "869975031234568", 1, now, sim.SmokeState{AlarmStatus: 1, Battery: 90, RSRP: -90})
	on, err := sim.OneNETPush(onenetToken, aesKey, sim.OneNETDataPoint(523456791, "Alarm_Status", now, 1), now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := sim.Push(ctx, http.DefaultClient, base+"/nbiot/ctwing/"+ctwingToken, ct, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Push(ctx, http.DefaultClient, base+"/nbiot/onenet", on, nil); err != nil {
		t.Fatal(err)
	}
	rcv.nextPush(t, 10*time.Second, "fire push of the CTWing detector", firePush("sm-nb-ct"))
	rcv.nextPush(t, 10*time.Second, "fire push of the OneNET detector", firePush("sm-nb-on"))
}

// TestNBIoTTwoChannels: a CTWing smoke alarm of a detector whose ledger
// entry names its responsible person reaches the station's push and, at a
// real local SMS/voice gateway that verifies the signature, an SMS and a
// voice call to that person (GB/T 45839 5.10.4).
func TestNBIoTTwoChannels(t *testing.T) {
	rcv := newReceiver(t)
	type msg struct{ to, channel, text string }
	got := make(chan msg, 10)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := alarms.PushKey([]byte(e2eSecret), alarms.RecipientSMS)
		if err := alarms.VerifyFor([][]byte{key}, alarms.RecipientSMS, r.Header.Get(alarms.HeaderTimestamp), b, r.Header.Get(alarms.HeaderSignatureV2)); err != nil {
			t.Errorf("gateway: %v", err)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("gateway body %s: %v", b, err)
		}
		got <- msg{m["to"], m["channel"], m["text"]}
	}))
	defer gw.Close()
	s := nbiotService(t, rcv, func(c *Config) { c.Alarms.SMSGateway = gw.URL })
	if code, body := post(t, s.httpURL()+"/nbiot/ctwing/"+ctwingToken, ctwingSmoke); code != 200 {
		t.Fatalf("ctwing push: %d %s", code, body)
	}
	rcv.nextPush(t, 10*time.Second, "fire push of the CTWing detector", firePush("sm-nb-ct"))
	channels := map[string]bool{}
	for range 2 {
		select {
		case m := <-got:
			if m.to != "13800000000" || !strings.Contains(m.text, "sm-nb-ct") {
				t.Errorf("gateway message %+v", m)
			}
			channels[m.channel] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("gateway got %v within 10 s, want sms and voice", channels)
		}
	}
	if !channels["sms"] || !channels["voice"] {
		t.Errorf("channels %v", channels)
	}
}

// TestNBIoTStopping: once shutdown has stopped the bridge (before the alarm
// manager stops), a push is answered 503, so that the platform sends it
// again to the next run, and nothing of it is taken.
func TestNBIoTStopping(t *testing.T) {
	rcv := newReceiver(t)
	s := nbiotService(t, rcv, nil)
	s.stopNBIoT()
	if code, body := post(t, s.httpURL()+"/nbiot/ctwing/"+ctwingToken, ctwingSmoke); code != http.StatusServiceUnavailable {
		t.Fatalf("push while stopping: %d %s, want 503", code, body)
	}
	if a := alarmsOf(t, s, "sm-nb-ct"); len(a) != 0 {
		t.Errorf("a push refused with 503 raised %v", a)
	}
	if m := scrape(t, s.httpURL()+"/metrics"); m[`firewatch_nbiot_requests_total{outcome="submit",platform="ctwing"}`] != 1 {
		t.Errorf("refusal not counted as submit")
	}
}

// TestNBIoTCheck: firewatch check and a start without any platform report
// a ledger binding to an unknown product with its line.
func TestNBIoTCheck(t *testing.T) {
	good := nbiotLedger(t, "http://127.0.0.1:1")
	b, _ := os.ReadFile(good)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(b), "nbiot: {platform_id: \"523456791\", product: NB-SMOKE-TM}", "nbiot: {platform_id: \"523456791\", product: NB-NOPE}", 1)), 0o600)
	for _, c := range []struct {
		ledger string
		code   int
		want   string
	}{{good, 0, "OK"}, {bad, 1, `device "sm-nb-on": nbiot product "NB-NOPE" has no codec`}} {
		var out, errb strings.Builder
		t.Setenv("FIREWATCH_ALARMS_SECRET", e2eSecret)
		code := cli([]string{"check", "-ledger", c.ledger}, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("check %s: %d %s %s, want %d and %q", filepath.Base(c.ledger), code, out.String(), errb.String(), c.code, c.want)
		}
	}
	cfg := embeddedConfig(t, newReceiver(t))
	cfg.Ledger = bad
	if _, err := newService(&cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "NB-NOPE") {
		t.Errorf("start without a platform: %v", err)
	}
}
