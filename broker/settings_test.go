package broker

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSettingsValidate(t *testing.T) {
	if err := DefaultSettings().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tt := range []struct {
		set  func(*Settings)
		want string
	}{
		{func(s *Settings) { s.Auth = "open" }, `mqtt.auth: "open" is not ledger or none`},
		{func(s *Settings) { s.TLSListen = "127.0.0.1:8883" }, "mqtt.tls_listen: set mqtt.tls_cert and mqtt.tls_key"},
		{func(s *Settings) { s.BridgeUser = "platform" }, "mqtt.bridge_user and mqtt.bridge_secret_hash go together"},
		{func(s *Settings) { s.MaxConnections = 0 }, "mqtt.max_connections must be positive"},
	} {
		s := DefaultSettings()
		tt.set(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want %q", err, tt.want)
		}
	}
}

// TestSettingsClient: the client keys make the URL and the external
// broker's source configuration.
func TestSettingsClient(t *testing.T) {
	s := DefaultSettings()
	if !s.Embedded() || s.URL() != "tcp://127.0.0.1:1883" {
		t.Fatalf("embedded: %v %s", s.Embedded(), s.URL())
	}
	s.Broker, s.Username, s.Password = "tcp://10.0.0.5:1883", "fw", "pw"
	sc := s.Source(nil)
	if s.Embedded() || s.URL() != s.Broker || sc.Broker != s.Broker || sc.ClientID != "firewatch" || sc.Username != "fw" || sc.Password != "pw" {
		t.Fatalf("external: %v %s %+v", s.Embedded(), s.URL(), sc)
	}
}

// TestSettingsConfig: the embedded broker's keys make its Config.
func TestSettingsConfig(t *testing.T) {
	l, _ := authLedger(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s := DefaultSettings()
	c, err := s.Config(l, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != s.Listen || c.Auth == nil || c.TLSConfig != nil || c.MaxConnections != DefaultMaxConnections {
		t.Fatalf("ledger auth: %+v", c)
	}
	s.Auth = "none"
	if c, err = s.Config(l, prometheus.NewRegistry(), log); err != nil || c.Auth != nil ||
		!strings.Contains(logs.String(), "mqtt.auth: none") {
		t.Fatalf("no auth: %+v %v, log %s", c, err, logs.String())
	}
	s.TLSListen, s.TLSCert, s.TLSKey = "127.0.0.1:0", filepath.Join(t.TempDir(), "no.pem"), filepath.Join(t.TempDir(), "no.key")
	if _, err := s.Config(l, prometheus.NewRegistry(), log); err == nil || !strings.HasPrefix(err.Error(), "mqtt.tls_cert/tls_key: ") {
		t.Fatalf("missing certificate: %v", err)
	}
	srv, _ := selfSigned(t)
	cert := srv.Certificates[0]
	key, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.TLSCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(s.TLSKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key}), 0o600)
	if c, err = s.Config(l, prometheus.NewRegistry(), log); err != nil || c.TLSAddr != s.TLSListen || c.TLSConfig == nil ||
		len(c.TLSConfig.Certificates) != 1 || c.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS: %+v %v", c, err)
	}
}
