package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

func TestSecretHash(t *testing.T) {
	h, err := HashSecret([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseSecretHash(h)
	if err != nil {
		t.Fatal(err)
	}
	if !p.verify([]byte("s3cret")) || p.verify([]byte("s3cret ")) {
		t.Fatal("verify")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=19456,t=2,p=1$!!$a2V5",
		"$argon2id$v=18$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$t=2,m=19456,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=19456,t=2$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=19456,t=0,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=x,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5"} {
		if CheckSecretHash(bad) == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// authLedger is a ledger with secrets: el-1 and sm-1 connect themselves,
// gw-1 forwards hy-1.
func authLedger(t testing.TB) (*devices.Ledger, map[string]string) {
	secrets := map[string]string{"el-1": "el-secret", "sm-1": "sm-secret", "gw-1": "gw-secret", "gw-2": "gw2-secret"}
	h := map[string]string{}
	for id, s := range secrets {
		var err error
		if h[id], err = HashSecret([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	y := fmt.Sprintf(`stations:
  - {id: st, name: S, grids: ["450204002"], endpoint: "http://127.0.0.1:1/x"}
gateways:
  - {id: gw-1, secret_hash: "%s"}
  - {id: gw-2, secret_hash: "%s"}
devices:
  - {id: el-1, kind: electrical, grid: "450204002003", secret_hash: "%s"}
  - {id: sm-1, kind: smoke, grid: "450204002003", secret_hash: "%s"}
  - {id: hy-1, kind: hydrant, grid: "450204002003", gateway: gw-1}
`, h["gw-1"], h["gw-2"], h["el-1"], h["sm-1"])
	l, err := devices.ParseLedger("auth.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return l, secrets
}

type testBroker struct {
	url, tlsURL string
	tlsConf     *tls.Config // for clients: trusts the broker's certificate
	got         chan string // topics firewatch's client received
}

func startAuthBroker(t *testing.T) (*testBroker, map[string]string) {
	l, secrets := authLedger(t)
	a, err := NewAuth(AuthConfig{Ledger: l, ServicePassword: "svc", ServiceClientID: "firewatch", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, cliTLS := selfSigned(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s, err := Start(Config{Addr: addr, TLSAddr: tlsAddr, TLSConfig: srvTLS, Auth: a, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := &testBroker{url: "tcp://" + addr, tlsURL: "ssl://" + tlsAddr, tlsConf: cliTLS, got: make(chan string, 100)}
	c, err := b.connect("firewatch", ServiceUser, "svc", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(0) })
	tok := c.Subscribe("fw/v1/up/#", 1, func(_ paho.Client, m paho.Message) { b.got <- m.Topic() })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("service subscribe failed", tok.Error())
	}
	return b, secrets
}

func (b *testBroker) connect(id, user, pass string, useTLS bool) (paho.Client, error) {
	o := paho.NewClientOptions().SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if useTLS {
		o.AddBroker(b.tlsURL).SetTLSConfig(b.tlsConf)
	} else {
		o.AddBroker(b.url)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	return c, tok.Error()
}

// TestBrokerAuth checks credentials and the topic ACL of the embedded
// broker with real MQTT clients, over TCP and TLS.
func TestBrokerAuth(t *testing.T) {
	b, sec := startAuthBroker(t)
	for _, c := range []struct{ name, id, user, pass string }{
		{"anonymous", "x", "", ""},
		{"unknown user", "ghost", "ghost", "x"},
		{"wrong secret", "el-1", "el-1", "sm-secret"},
		{"other's client id", "sm-1", "el-1", "el-secret"},
		{"service name from outside", "firewatch", ServiceUser, "guess"},
		{"device without secret", "hy-1", "hy-1", ""},
	} {
		if cl, err := b.connect(c.id, c.user, c.pass, false); err == nil {
			cl.Disconnect(0)
			t.Errorf("%s: connected", c.name)
		}
	}

	el, err := b.connect("el-1", "el-1", sec["el-1"], true) // over TLS
	if err != nil {
		t.Fatal(err)
	}
	defer el.Disconnect(0)
	pub := func(c paho.Client, topic string) error {
		tok := c.Publish(topic, 1, false, `{"m":{}}`)
		if !tok.WaitTimeout(3 * time.Second) {
			return fmt.Errorf("no PUBACK")
		}
		return tok.Error()
	}
	if err := pub(el, "fw/v1/up/el-1/telemetry"); err != nil {
		t.Fatal(err)
	}
	expect(t, b.got, "fw/v1/up/el-1/telemetry")
	// Subscribing to another device's downlink is refused (SUBACK 0x80).
	tok := el.Subscribe("fw/v1/down/sm-1/#", 1, nil)
	tok.WaitTimeout(3 * time.Second)
	if st := tok.(*paho.SubscribeToken); st.Result()["fw/v1/down/sm-1/#"] != 0x80 {
		t.Errorf("subscribe to another's downlink: %v", st.Result())
	}
	// Publishing as another device: the broker disconnects el-1, nothing
	// reaches firewatch.
	pub(el, "fw/v1/up/sm-1/event")

	gw, err := b.connect("gw-2", "gw-2", sec["gw-2"], false)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Disconnect(0)
	pub(gw, "fw/v1/up/gw/gw-1/batch") // another gateway's topic: refused
	gw1, err := b.connect("gw-1", "gw-1", sec["gw-1"], false)
	if err != nil {
		t.Fatal(err)
	}
	defer gw1.Disconnect(0)
	// gw-1 forwards hy-1: it may subscribe to hy-1's commands and publish
	// hy-1's acknowledgements, not el-1's.
	tok = gw1.Subscribe("fw/v1/down/hy-1/command", 1, nil)
	tok.WaitTimeout(3 * time.Second)
	if r := tok.(*paho.SubscribeToken).Result()["fw/v1/down/hy-1/command"]; r != 1 {
		t.Errorf("gateway subscribe to its device's commands: %v", r)
	}
	tok = gw1.Subscribe("fw/v1/down/el-1/command", 1, nil)
	tok.WaitTimeout(3 * time.Second)
	if r := tok.(*paho.SubscribeToken).Result()["fw/v1/down/el-1/command"]; r != 0x80 {
		t.Errorf("gateway subscribe to another's commands: %v", r)
	}
	if err := pub(gw1, "fw/v1/up/hy-1/ack"); err != nil {
		t.Fatal(err)
	}
	expect(t, b.got, "fw/v1/up/hy-1/ack")
	if err := pub(gw1, "fw/v1/up/gw/gw-1/batch"); err != nil {
		t.Fatal(err)
	}
	// Only the gateway's own batch arrives: the spoofed publishes came
	// before it on their connections and were dropped.
	expect(t, b.got, "fw/v1/up/gw/gw-1/batch")
	select {
	case topic := <-b.got:
		t.Fatalf("unexpected delivery %s", topic)
	default:
	}
}

func expect(t *testing.T, got chan string, topic string) {
	t.Helper()
	select {
	case g := <-got:
		if g != topic {
			t.Fatalf("got %s, want %s", g, topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s not delivered", topic)
	}
}

func selfSigned(t *testing.T) (server, client *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
