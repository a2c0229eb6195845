package alarms

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// smsGateway is an SMS/voice gateway webhook on 127.0.0.1 that verifies the
// push signature with the key of recipient "sms" (firewatch push-key sms).
type smsGateway struct {
	*httptest.Server
	mu     sync.Mutex
	got    []map[string]string
	fail   int // answer 503 to this many requests first
	calls  int
	notify chan struct{}
}

func newSMSGateway(t *testing.T, fail int) *smsGateway {
	g := &smsGateway{fail: fail, notify: make(chan struct{}, 100)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if to := r.Header.Get(HeaderRecipient); to != RecipientSMS {
			t.Errorf("gateway: recipient %q", to)
		}
		if err := VerifyFor([][]byte{PushKey(testSecret, RecipientSMS)}, RecipientSMS, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignatureV2)); err != nil {
			t.Errorf("gateway: signature: %v", err)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		g.calls++
		if g.calls <= g.fail {
			http.Error(w, "gateway busy", http.StatusServiceUnavailable)
			return
		}
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("gateway: body %s: %v", body, err)
		}
		m["key"] = r.Header.Get(HeaderIdempotencyKey)
		g.got = append(g.got, m)
		g.notify <- struct{}{}
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *smsGateway) messages() []map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]string(nil), g.got...)
}

// smsLedger binds the test ledger's smoke detector with a responsible
// person and a mobile.
func smsLedger(t *testing.T, station string) *devices.Ledger {
	y := strings.Replace(fmt.Sprintf(ledgerYAML, station, station), "    unit: 某村民委员会\n",
		"    unit: 某村民委员会\n    nbiot: {imei: \"869975031234568\", responsible: 韦建国, mobile: \"13800000000\"}\n", 1)
	l, err := devices.ParseLedger("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSMSGateway: a fire of a detector whose ledger entry names a mobile
// reaches the responsible person as an SMS and a voice call through the
// gateway, besides the station's push; the gateway's failures are retried
// and recorded with the alarm; a device without a mobile sends nothing.
func TestSMSGateway(t *testing.T) {
	station := newReceiver(t)
	gw := newSMSGateway(t, 2)
	l := smsLedger(t, station.srv.URL)
	cfg := testConfig(t)
	var err error
	if cfg.SMS, err = NewSMSGateway(gw.URL, ""); err != nil {
		t.Fatal(err)
	}
	m := start(t, cfg, l)
	tr := newTestRules(t)
	fault := &rules.Rule{ID: "elec-fault", Kind: devices.KindElectrical, Metric: metric(t, devices.KindElectrical, "fault"),
		Op: rules.OpEvent, Severity: rules.SeverityFault}
	m.Submit(raise(fault, devElectrical, 0, 1, 0)) // no mobile: the station only
	m.Submit(raise(tr.smoke, devSmoke, 0, 1, 0))
	m.Sync()
	for range 2 {
		station.next(t)
	}
	for range 2 {
		select {
		case <-gw.notify:
		case <-time.After(wait):
			t.Fatalf("gateway got %v", gw.messages())
		}
	}
	msgs := gw.messages()
	channels := map[string]bool{}
	for _, msg := range msgs {
		channels[msg["channel"]] = true
		if msg["to"] != "13800000000" || msg["name"] != "韦建国" || msg["device"] != "sm-450204-0002" || msg["severity"] != "fire" ||
			!strings.Contains(msg["text"], "烟雾报警") || msg["key"] != msg["alarm_id"]+"-raised-"+msg["channel"] {
			t.Errorf("gateway message %v", msg)
		}
	}
	if len(msgs) != 2 || !channels["sms"] || !channels["voice"] {
		t.Fatalf("gateway messages %v, want one sms and one voice", msgs)
	}
	a := list(t, m.Manager, Filter{Device: "sm-450204-0002"})
	if len(a) != 1 {
		t.Fatalf("alarms %v", a)
	}
	poll(t, "sms and voice recorded as delivered on the alarm", func() bool {
		n := 0
		for _, p := range get(t, m.Manager, a[0].ID).Pushes {
			if (p.Target == TargetSMS || p.Target == TargetVoice) && p.DeliveredAt != nil && p.Attempts >= 1 {
				n++
			}
		}
		return n == 2
	})
}

// TestSMSGatewayDown: a dead gateway holds up neither the station's push
// nor a later alarm's.
func TestSMSGatewayDown(t *testing.T) {
	station := newReceiver(t)
	gw := newSMSGateway(t, 1<<30)
	cfg := testConfig(t)
	var err error
	if cfg.SMS, err = NewSMSGateway(gw.URL, ""); err != nil {
		t.Fatal(err)
	}
	m := start(t, cfg, smsLedger(t, station.srv.URL))
	tr := newTestRules(t)
	m.Submit(raise(tr.smoke, devSmoke, 0, 1, 0))
	m.Submit(raise(tr.residual, devElectrical, 0, 400, 10_000))
	m.Sync()
	got := map[string]bool{}
	for range 2 {
		got[station.next(t).push.Rule] = true
	}
	if !got["smoke-fire"] || !got["elec-residual-alarm"] {
		t.Errorf("station pushes %v", got)
	}
}

func TestSMSTemplate(t *testing.T) {
	g, err := NewSMSGateway("https://sms.example.cn/send", `{"phone":{{json .Mobile}},"content":{{json .Text}},"tts":{{if eq .Channel "voice"}}true{{else}}false{{end}}}`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.body(SMSMessage{Mobile: "13900000000", Channel: TargetVoice, Text: "【火警】\"和平路\"14号"})
	if err != nil || string(b) != `{"phone":"13900000000","content":"【火警】\"和平路\"14号","tts":true}` {
		t.Errorf("body %s %v", b, err)
	}
	for _, c := range []struct{ url, tmpl, want string }{
		{"ftp://x", "", "not an http(s) URL"},
		{"https://x/y", `{"phone":"{{.Mobile}}"`, "not JSON"},
		{"https://x/y", `{{.Nope}}`, "sms template"},
		{"https://x/y", `{{`, "sms template"},
	} {
		if _, err := NewSMSGateway(c.url, c.tmpl); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q: %v, want %s", c.url, c.tmpl, err, c.want)
		}
	}
}
