package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// centreReport is one status_info report the centre took.
type centreReport struct {
	body string
	at   time.Time
}

// newCentre is a real local 中心级 platform taking GB/T 45839 status_info
// reports on its path token: answers {"success":1}, or 503 while down.
// tries counts every attempt, taken ones included.
func newCentre(t *testing.T) (srv *httptest.Server, got chan centreReport, down *atomic.Bool, tries *atomic.Int64) {
	got = make(chan centreReport, 20)
	down, tries = new(atomic.Bool), new(atomic.Int64)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		b, _ := io.ReadAll(r.Body)
		tries.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/gb45839/centre-token-7f3a/status_info" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("centre: %s %s %s", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		if down.Load() {
			http.Error(w, "centre down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"success":1}`))
		got <- centreReport{string(b), at}
	}))
	t.Cleanup(srv.Close)
	return srv, got, down, tries
}

func nextReport(t *testing.T, got chan centreReport, what string) centreReport {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(15 * time.Second):
		t.Fatalf("the centre got no %s within 15 s", what)
		return centreReport{}
	}
}

// TestNBIoTForward: firewatch as the on-site platform reports the alarm
// and the fault of an NB-IoT detector to a 中心级 platform in GB/T 45839
// Appendix D status_info, byte for byte as written by hand from the
// standard's field table: a centre that is down is retried until it takes
// the report (nothing lost), a fault reaches it within the < 10 s of 5.5.3
// (measured from the raise), a fault that ends under an open fire leaves
// the centre at 报警, and the fire closed by a person brings it to 正常.
func TestNBIoTForward(t *testing.T) {
	centre, got, down, tries := newCentre(t)
	rcv := newReceiver(t)
	s := nbiotService(t, rcv, func(c *Config) {
		c.NBIoT.Forward.URL = centre.URL + "/gb45839/centre-token-7f3a/status_info"
		c.NBIoT.Forward.Company = "ABCD"
	})
	status := s.httpURL() + "/nbiot/gb45839/" + gb45839Token + "/status_info"
	cst := time.FixedZone("CST", 8*3600)
	dt := time.Now().In(cst).Format("2006-01-02 15:04:05")

	// The centre is down when the detector's fire comes.
	down.Store(true)
	fire := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":2,"signalStrength":-99,"batteryPercentage":76,"datetime":"` + dt + `"}`
	if code, body := post(t, status, fire); code != 200 || body != `{"success":1}` {
		t.Fatalf("status_info: %d %s", code, body)
	}
	testenv.WaitFor(t, 10*time.Second, "two refused attempts at the centre", func() bool { return tries.Load() >= 2 })
	down.Store(false)
	r := nextReport(t, got, "fire report")
	want := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":2,"signalStrength":-99,"batteryPercentage":76,"datetime":"` + dt + `"}`
	if r.body != want {
		t.Fatalf("fire report\n got %s\nwant %s", r.body, want)
	}

	// A fault, the centre up: within 10 s of the raise (GB/T 45839 5.5.3).
	fault := strings.Replace(strings.Replace(fire, `"status":2`, `"status":3`, 1), `"batteryPercentage":76`, `"batteryPercentage":74`, 1)
	if code, body := post(t, status, fault); code != 200 {
		t.Fatalf("status_info fault: %d %s", code, body)
	}
	r = nextReport(t, got, "fault report")
	want = `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":3,"signalStrength":-99,"batteryPercentage":74,"datetime":"` + dt + `"}`
	if r.body != want {
		t.Fatalf("fault report\n got %s\nwant %s", r.body, want)
	}
	var faultAlarm map[string]any
	for _, a := range alarmsOf(t, s, "sm-nb-gb") {
		if a["rule"] == "smoke.fault" {
			faultAlarm = a
		}
	}
	raised, err := time.Parse(time.RFC3339Nano, faultAlarm["raised_at"].(string))
	if err != nil {
		t.Fatalf("raised_at of %v: %v", faultAlarm, err)
	}
	lat := r.at.Sub(raised)
	t.Logf("fault raised → centre receipt: %v (GB/T 45839 5.5.3: < 10 s)", lat)
	if lat >= 10*time.Second {
		t.Errorf("fault reached the centre %v after the raise, want < 10 s", lat)
	}

	// Back to normal: the fault clears, the fire stays open until a person
	// closes it, so the centre stays at 报警.
	normal := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":1,"signalStrength":-97,"batteryPercentage":74,"datetime":"` + dt + `"}`
	if code, body := post(t, status, normal); code != 200 {
		t.Fatalf("status_info normal: %d %s", code, body)
	}
	r = nextReport(t, got, "report of the cleared fault")
	checkClosing(t, r.body, 2, cst)

	var fireID string
	for _, a := range alarmsOf(t, s, "sm-nb-gb") {
		if a["rule"] == "smoke.smoke_alarm" {
			fireID = a["id"].(string)
		}
	}
	ctx := context.Background()
	for _, st := range []alarms.State{alarms.StateAcknowledged, alarms.StateResolved} {
		if _, err := s.alarms.Transition(ctx, fireID, st, "ops", "复位"); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	r = nextReport(t, got, "report of the closed fire")
	checkClosing(t, r.body, 1, cst)
	select {
	case r := <-got:
		t.Errorf("an extra report: %s", r.body)
	default:
	}
}

// checkClosing checks a closing report: the datetime is the closing time
// (now), the rest byte for byte.
func checkClosing(t *testing.T, body string, status int, cst *time.Location) {
	t.Helper()
	i := strings.Index(body, `"datetime":"`)
	if i < 0 || len(body) < i+len(`"datetime":"2006-01-02 15:04:05"}`) {
		t.Fatalf("closing report without datetime: %s", body)
	}
	dt := body[i+len(`"datetime":"`) : i+len(`"datetime":"2006-01-02 15:04:05`)]
	at, err := time.ParseInLocation("2006-01-02 15:04:05", dt, cst)
	if err != nil || time.Since(at) > time.Minute || time.Until(at) > time.Second {
		t.Errorf("closing report's datetime %q is not now: %v", dt, err)
	}
	want := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":` + string(rune('0'+status)) +
		`,"signalStrength":-97,"batteryPercentage":74,"datetime":"` + dt + `"}`
	if body != want {
		t.Errorf("closing report\n got %s\nwant %s", body, want)
	}
}

// TestNBIoTForwardCheck: with nbiot.forward on, firewatch check refuses a
// bound serial that is not an Appendix B id, naming its device.
func TestNBIoTForwardCheck(t *testing.T) {
	good := nbiotLedger(t, "http://127.0.0.1:1")
	b, _ := os.ReadFile(good)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(b), `serial: "ABCD01250601SN00000010A1F2E"`, `serial: "abcd01250601SN00000010A1F2E"`, 1)), 0o600)
	t.Setenv("FIREWATCH_ALARMS_SECRET", e2eSecret)
	t.Setenv("FIREWATCH_NBIOT_FORWARD_URL", "https://centre.example/gb45839/t0ken/status_info")
	t.Setenv("FIREWATCH_NBIOT_FORWARD_COMPANY", "ABCD")
	for _, c := range []struct {
		ledger string
		code   int
		want   string
	}{{good, 0, "OK"}, {bad, 1, `device "sm-nb-gb": `}} {
		var out, errb strings.Builder
		code := cli([]string{"check", "-ledger", c.ledger}, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("check %s: %d %s %s, want %d and %q", filepath.Base(c.ledger), code, out.String(), errb.String(), c.code, c.want)
		}
	}
}

// TestNBIoTForwardRestart: a report the centre refused while firewatch
// ran is still delivered after a restart (the outbox row outlives the
// process), once.
func TestNBIoTForwardRestart(t *testing.T) {
	centre, got, down, tries := newCentre(t)
	rcv := newReceiver(t)
	cfg := embeddedConfig(t, rcv)
	cfg.Ledger = nbiotLedger(t, rcv.URL)
	cfg.NBIoT.GB45839.Token = gb45839Token
	cfg.NBIoT.Forward.URL = centre.URL + "/gb45839/centre-token-7f3a/status_info"
	cfg.NBIoT.Forward.Company = "ABCD"
	s, stop := runService(t, &cfg, slog.LevelError)
	down.Store(true)
	dt := time.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02 15:04:05")
	fire := `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":2,"signalStrength":-99,"batteryPercentage":76,"datetime":"` + dt + `"}`
	if code, body := post(t, s.httpURL()+"/nbiot/gb45839/"+gb45839Token+"/status_info", fire); code != 200 {
		t.Fatalf("status_info: %d %s", code, body)
	}
	testenv.WaitFor(t, 10*time.Second, "a refused attempt at the centre", func() bool { return tries.Load() >= 1 })
	stop()
	down.Store(false)
	runService(t, &cfg, slog.LevelError)
	if r := nextReport(t, got, "fire report after the restart"); r.body != fire {
		t.Fatalf("fire report after the restart\n got %s\nwant %s", r.body, fire)
	}
	select {
	case r := <-got:
		t.Errorf("the report came twice: %s", r.body)
	case <-time.After(500 * time.Millisecond): // a duplicate would follow at once
	}
}
