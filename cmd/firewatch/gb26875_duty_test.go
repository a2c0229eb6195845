package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/firmware-sim/uitd"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	gb26875server "github.com/firewatch-iot/firewatch/ingest/gb26875/server"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestGB26875Inspect: the centre's duties in a running firewatch with the simulated UITD over TCP: the
// UITD gets the centre's time on connecting (校时); an operator's 查岗 through the API (a viewer may not)
// reaches it, the simulated fire control room answers, and the unit's 考核 figure shows the answer in the
// API and in /metrics.
func TestGB26875Inspect(t *testing.T) {
	const operator, viewer = "operator-secret-0123456789", "viewer-secret-0123456789"
	rcv := newReceiver(t)
	s := uitdService(t, rcv, func(ledger string, c *Config) string {
		c.HTTP.Tokens = "duty:operator:" + operator + ",watch:viewer:" + viewer
		return ledger
	})
	u, err := uitd.Dial(context.Background(), "tcp", s.gb.Addr().String(), uitd.Config{Addr: gb26875.Address{1, 2, 3, 4, 5, 6}, DutyDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.KeepAlive(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "校时 on connect", func() bool { return slices.Contains(u.Controls(), gb26875.TypeSyncClock) })

	inspect := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, s.httpURL()+"/api/v1/uitds/uitd-1/inspect", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := inspect(viewer); code != http.StatusForbidden {
		t.Errorf("查岗 by a viewer: %d, want 403", code)
	}
	if code := inspect(operator); code != http.StatusAccepted {
		t.Fatalf("查岗 by an operator: %d, want 202", code)
	}
	var a gb26875server.Assessment
	testenv.WaitFor(t, 10*time.Second, "the 查岗 answered", func() bool {
		getAs(t, viewer, s.httpURL()+"/api/v1/uitds/010203040506/inspections", &a)
		return a.Answered == 1
	})
	if a.Asked != 1 || a.MedianAnswerSeconds == nil || a.Recent[0].Actor != "duty" {
		t.Errorf("assessment %+v", a)
	}
	// The digest of the UITD's county names the unit's 考核 figure (alarms.Config.Inspections).
	var dg struct{ Text string }
	since, until := time.Now().Add(-time.Hour).UTC(), time.Now().Add(time.Hour).UTC()
	getAs(t, viewer, s.httpURL()+"/api/v1/digest?grid=450204&since="+since.Format(time.RFC3339)+"&until="+until.Format(time.RFC3339), &dg)
	if want := "- 柳石家园物业（uitd-1）：查岗 1 次，应答 1 次，应答率 100%，应答中位"; !strings.Contains(dg.Text, want) {
		t.Errorf("digest lacks %q:\n%s", want, dg.Text)
	}
	// A read of the UITD's clock (type 88), answered by the simulator (type 28).
	req, _ := http.NewRequest(http.MethodPost, s.httpURL()+"/api/v1/uitds/uitd-1/read", strings.NewReader(`{"type":88}`))
	req.Header.Set("Authorization", "Bearer "+operator)
	rr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res gb26875server.ReadResult
	if err := json.NewDecoder(rr.Body).Decode(&res); err != nil || rr.StatusCode != 200 || res.Type != 28 || len(res.Objects) != 1 || res.Objects[0].Time == "" {
		t.Errorf("read of the UITD's time: %d %v %+v", rr.StatusCode, err, res)
	}
	rr.Body.Close()
	resp, err := http.Get(s.httpURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `firewatch_gb26875_inspections_answered_total{uitd="uitd-1",unit="柳石家园物业"} 1`; !strings.Contains(string(b), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
