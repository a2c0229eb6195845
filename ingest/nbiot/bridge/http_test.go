package bridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const gbStatus = `{"company":"ABCD","serial":"ABCD01250601SN00000010A1F2E","status":1,"batteryPercentage":80,"datetime":"2026-12-01 10:00:00"}`

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns a
// client that trusts it.
func selfSigned(t *testing.T) (cert, key string, client *http.Client) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firewatch"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
}

// TestOwnTLSListener: with nbiot.listen and a certificate the endpoints are
// served over HTTPS on their own address (and only there); Stop closes it.
func TestOwnTLSListener(t *testing.T) {
	cert, key, client := selfSigned(t)
	rec := &recorder{}
	cfg := Config{Listen: "127.0.0.1:0", TLSCert: cert, TLSKey: key}
	cfg.GB45839.Token = "gb-peer-0123456789"
	b, _ := newBridge(t, cfg, rec)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	url := "https://" + b.Addr() + "/nbiot/gb45839/gb-peer-0123456789/status_info"
	resp, err := client.Post(url, "application/json", strings.NewReader(gbStatus))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(rec.take()) == 0 {
		t.Fatalf("https push: %s", resp.Status)
	}
	if resp, err := http.Post("http://"+b.Addr()+"/nbiot/gb45839/gb-peer-0123456789/status_info", "application/json", strings.NewReader(gbStatus)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP taken on the TLS listener")
		}
	}
	b.Stop(t.Context())
	// Not by dialling the port: another test may have it by now.
	if _, err := b.srv.ln.Accept(); err == nil {
		t.Error("listener still open after Stop")
	}

	bad := cfg
	bad.TLSKey = cert // not a key
	b2, _ := newBridge(t, bad, rec)
	if err := b2.Start(); err == nil || !strings.Contains(err.Error(), "nbiot.tls_cert") {
		t.Errorf("bad key pair: %v", err)
	}
}

// TestRateLimit: beyond its rate a platform is answered 429 and counted;
// the others are not affected.
func TestRateLimit(t *testing.T) {
	rec := &recorder{}
	cfg := Config{Rate: 2}
	cfg.GB45839.Token = "gb-peer-0123456789"
	cfg.OneNET.Token = "on-token"
	b, _ := newBridge(t, cfg, rec)
	mux := http.NewServeMux()
	if err := b.Mount(mux); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var codes []int
	for range 3 {
		resp, err := http.Post(srv.URL+"/nbiot/gb45839/gb-peer-0123456789/status_info", "application/json", strings.NewReader(gbStatus))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 200 || codes[2] != 429 {
		t.Errorf("codes %v: want 200 first and 429 beyond the burst", codes)
	}
	if n := testutil.ToFloat64(b.met.requests.WithLabelValues("gb45839", "rate_limited")); n < 1 {
		t.Errorf("rate_limited counted %v", n)
	}
	resp, err := http.Get(srv.URL + "/nbiot/onenet?msg=x&nonce=y&signature=z")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 429 {
		t.Error("OneNET limited by GB/T 45839's pushes")
	}
}
