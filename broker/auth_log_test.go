package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/internal/logbudget"
)

// TestAuthRefusalLogs: every refusal of the embedded broker logs which
// rule refused whom (issue 17: a gateway refused for its client id was
// logged only as msg="" error="bad username or password"), and a flood of
// refusals is rate-limited.
func TestAuthRefusalLogs(t *testing.T) {
	l, sec := authLedger(t)
	var buf bytes.Buffer
	a, err := NewAuth(AuthConfig{Ledger: l, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	conn := func(id, user, pass string) bool {
		cl := &mochi.Client{ID: id, Net: mochi.ClientConnection{Remote: "192.0.2.7:40000"}}
		return a.OnConnectAuthenticate(cl, packets.Packet{Connect: packets.ConnectParams{Username: []byte(user), Password: []byte(pass)}})
	}
	for _, c := range []struct {
		id, user, pass string
		want           []string
	}{
		{"ghost", "ghost", "x", []string{"rule=unknown_user", "user=ghost", "client_id=ghost", "remote=192.0.2.7:40000"}},
		{"firegate-gw-1", "gw-1", sec["gw-1"], []string{"rule=client_id", "user=gw-1", "client_id=firegate-gw-1", "want_client_id=gw-1"}},
		{"el-1", "el-1", "wrong", []string{"rule=bad_secret", "user=el-1", "client_id=el-1"}},
	} {
		buf.Reset()
		if conn(c.id, c.user, c.pass) {
			t.Fatalf("%s/%s admitted", c.id, c.user)
		}
		for _, w := range c.want {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("refusal of %s/%s: log %q lacks %q", c.id, c.user, buf.String(), w)
			}
		}
		if strings.Contains(buf.String(), c.pass) && c.pass != "x" {
			t.Errorf("the log shows the secret: %s", buf.String())
		}
	}
	cl := &mochi.Client{ID: "el-1", Properties: mochi.ClientProperties{Username: []byte("el-1")}}
	buf.Reset()
	if a.OnACLCheck(cl, "fw/v1/up/sm-1/telemetry", true) {
		t.Fatal("el-1 may publish as sm-1")
	}
	if s := buf.String(); !strings.Contains(s, "rule=publish") || !strings.Contains(s, "user=el-1") || !strings.Contains(s, "topic=fw/v1/up/sm-1/telemetry") {
		t.Errorf("publish refusal log %q", s)
	}
	buf.Reset()
	for range 100 {
		conn("ghost", "ghost", "x")
	}
	if n := strings.Count(buf.String(), "rule=unknown_user"); n > logbudget.PerSecond*2 {
		t.Errorf("100 refusals logged %d lines, want at most %d a second", n, logbudget.PerSecond)
	}
}

// TestRefusalFilter: mochi-mqtt's bare line for a refused connection is
// dropped (Auth logs it with the rule and the client); its other lines pass.
func TestRefusalFilter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(refusalFilter{slog.NewTextHandler(&buf, nil)}).With("component", "broker")
	log.Warn("", "error", packets.ErrBadUsernameOrPassword)
	if buf.Len() != 0 {
		t.Errorf("the bare refusal line passed: %s", buf.String())
	}
	log.Warn("", "error", packets.ErrMalformedPacket)
	log.Info("mochi mqtt server started")
	if s := buf.String(); !strings.Contains(s, "malformed") || !strings.Contains(s, "server started") {
		t.Errorf("other lines were dropped: %q", s)
	}
}
