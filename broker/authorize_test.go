package broker

import (
	"errors"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestAuthorize: the grants Authorize returns are the embedded ACL's topics
// (docs/security.md, "Principals"), a gateway's including its devices', and
// a refusal is ErrDenied, counted by reason.
func TestAuthorize(t *testing.T) {
	l, secrets := authLedger(t)
	reg := prometheus.NewRegistry()
	a, err := NewAuth(AuthConfig{Ledger: l, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	g, err := a.Authorize("sm-1", "sm-1", "127.0.0.1", []byte(secrets["sm-1"]))
	if err != nil {
		t.Fatal(err)
	}
	want := Grant{Publish: []string{"fw/v1/up/sm-1/telemetry", "fw/v1/up/sm-1/event", "fw/v1/up/sm-1/status", "fw/v1/up/sm-1/ack"},
		Subscribe: []string{"fw/v1/down/sm-1/#"}}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("device grant %+v, want %+v", g, want)
	}
	g, err = a.Authorize("gw-1", "gw-1", "127.0.0.1:5000", []byte(secrets["gw-1"]))
	if err != nil {
		t.Fatal(err)
	}
	want = Grant{Publish: []string{"fw/v1/up/gw/gw-1/batch", "fw/v1/up/gw/gw-1/status", "fw/v1/up/hy-1/ack"},
		Subscribe: []string{"fw/v1/down/gw/gw-1/#", "fw/v1/down/hy-1/#"}}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("gateway grant %+v, want %+v", g, want)
	}
	for _, c := range []struct{ user, client, pass, reason string }{
		{"sm-1", "sm-1", "wrong", "bad_secret"},
		{"sm-1", "other", secrets["sm-1"], "client_id"},
		{"nobody", "nobody", "x", "unknown_user"},
	} {
		if _, err := a.Authorize(c.user, c.client, "127.0.0.2", []byte(c.pass)); !errors.Is(err, ErrDenied) {
			t.Errorf("%+v: %v, want ErrDenied", c, err)
		}
		if n := testCounter(t, reg, c.reason); n < 1 {
			t.Errorf("%s not counted", c.reason)
		}
	}
	// Following the live registry: a removed device is refused.
	live := devices.NewLive(l)
	a.FollowLive(live, nil)
	if _, _, err := live.Apply(&devices.Change{DeleteDevices: []string{"sm-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize("sm-1", "sm-1", "127.0.0.1", []byte(secrets["sm-1"])); !errors.Is(err, ErrDenied) {
		t.Errorf("removed device: %v, want ErrDenied", err)
	}
}

func testCounter(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if mf.GetName() == "firewatch_broker_denied_total" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
