package pahoconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/firewatch-iot/firewatch/internal/netbuf"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

func client(t *testing.T, broker, id string, tlsc *tls.Config) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true).
		SetOrderMatters(true).SetAutoReconnect(false).SetCustomOpenConnectionFn(Open)
	if tlsc != nil {
		o.SetTLSConfig(tlsc)
	}
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// roundTrip publishes n QoS 1 messages through the broker and checks that
// the subscriber gets every one, in order, and every publish is
// acknowledged.
func roundTrip(t *testing.T, broker string, tlsc *tls.Config, n int) {
	t.Helper()
	got := make(chan uint32, n)
	sub := client(t, broker, "sub", tlsc)
	if tok := sub.Subscribe("t/#", 1, func(_ paho.Client, m paho.Message) {
		got <- binary.BigEndian.Uint32(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := client(t, broker, "pub", tlsc)
	toks := make([]paho.Token, n)
	for i := range n {
		toks[i] = pub.Publish("t/x", 1, false, binary.BigEndian.AppendUint32(nil, uint32(i)))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d not acknowledged: %v", i, tok.Error())
		}
	}
	for i := range n {
		select {
		case v := <-got:
			if v != uint32(i) {
				t.Fatalf("message %d arrived as %d-th", v, i)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d messages arrived", i, n)
		}
	}
}

// paho through netbuf on a real Mosquitto: QoS 1 both ways, every publish
// acknowledged, nothing lost or reordered.
func TestThroughMosquitto(t *testing.T) {
	m := testenv.StartMosquitto(t)
	roundTrip(t, m.URL, nil, 3000)
}

// The same over TLS (ssl://), netbuf below the TLS layer, against mochi.
func TestTLS(t *testing.T) {
	srvConf, cliConf := tlsConfigs(t)
	s := mochi.New(&mochi.Options{InlineClient: false})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tls", Address: addr, TLSConfig: srvConf})); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roundTrip(t, "ssl://"+addr, cliConf, 500)
}

// The connection paho gets is netbuf's (below TLS for ssl://).
func TestOpenWraps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	u, _ := url.Parse("tcp://" + ln.Addr().String())
	c, err := Open(u, *paho.NewClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*netbuf.Conn); !ok {
		t.Fatalf("tcp:// gave %T, want *netbuf.Conn", c)
	}
	u.Scheme = "gopher"
	if _, err := Open(u, *paho.NewClientOptions()); err == nil {
		t.Fatal("unknown scheme accepted")
	}
}

// tlsConfigs makes a self-signed certificate for 127.0.0.1.
func tlsConfigs(t *testing.T) (srv, cli *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool}
}
