package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
)

// Settings is the mqtt section of the firewatch configuration file: which
// broker firewatch uses (an external one, or this package's embedded one),
// firewatch's client credential there, and the embedded broker's
// listeners, authentication and bounds. Its YAML keys, help texts and
// secret marks make the section's keys, flags (-mqtt.broker), environment
// variables (FIREWATCH_MQTT_BROKER) and docs/config.md rows. The section
// is one struct, in this package, so that its keys stay in their order;
// Source turns the client keys into an ingest.SourceConfig, Config the
// embedded broker's keys into a Config.
type Settings struct {
	// Broker is an external broker URL; empty runs the embedded one.
	Broker   string `yaml:"broker" help:"external MQTT broker URL (tcp://host:1883); empty: run the embedded broker"`
	Listen   string `yaml:"listen" help:"address of the embedded broker"`
	ClientID string `yaml:"client_id" help:"MQTT client id (fixed: it names the persistent session)"`
	Username string `yaml:"username" help:"MQTT username"`
	Password string `yaml:"password" help:"MQTT password" secret:"true"`
	// Auth, TLS and Bridge apply to the embedded broker (docs/security.md).
	Auth             string `yaml:"auth" help:"embedded broker authentication: ledger (per-device credentials and topic ACLs) or none"`
	TLSListen        string `yaml:"tls_listen" help:"address of the embedded broker's MQTT-over-TLS listener; empty: none"`
	TLSCert          string `yaml:"tls_cert" help:"PEM certificate (chain) of the TLS listener"`
	TLSKey           string `yaml:"tls_key" help:"PEM private key of the TLS listener"`
	BridgeUser       string `yaml:"bridge_user" help:"user name of a trusted upstream that may publish for any ledger device (NB-IoT platform forwarder, demo simulator); empty: none"`
	BridgeSecretHash string `yaml:"bridge_secret_hash" help:"argon2id hash of the bridge's secret (firewatch hash-secret)" secret:"true"`
	MaxConnections   int    `yaml:"max_connections" help:"open client connections of the embedded broker at most, authenticated or not; more are closed at once"`
}

// DefaultSettings returns the mqtt section's defaults: the embedded broker
// on loopback, with the ledger's credentials and ACLs.
func DefaultSettings() Settings {
	return Settings{Listen: "127.0.0.1:1883", ClientID: "firewatch", Auth: "ledger", MaxConnections: DefaultMaxConnections}
}

// Validate returns every problem with the section, each named by its key.
func (s Settings) Validate() error {
	var errs []error
	switch s.Auth {
	case "ledger", "none":
	default:
		errs = append(errs, fmt.Errorf("mqtt.auth: %q is not ledger or none", s.Auth))
	}
	if s.TLSListen != "" && (s.TLSCert == "" || s.TLSKey == "") {
		errs = append(errs, errors.New("mqtt.tls_listen: set mqtt.tls_cert and mqtt.tls_key"))
	}
	if (s.BridgeUser == "") != (s.BridgeSecretHash == "") {
		errs = append(errs, errors.New("mqtt.bridge_user and mqtt.bridge_secret_hash go together"))
	}
	if s.MaxConnections <= 0 {
		errs = append(errs, errors.New("mqtt.max_connections must be positive"))
	}
	return errors.Join(errs...)
}

// Embedded reports whether the section runs the embedded broker (no
// external mqtt.broker).
func (s Settings) Embedded() bool { return s.Broker == "" }

// URL is the broker's URL: mqtt.broker, or the embedded broker's plain
// listener.
func (s Settings) URL() string {
	if s.Embedded() {
		return "tcp://" + s.Listen
	}
	return s.Broker
}

// Source is the configuration of firewatch's client of an external broker
// (mqtt.broker): its URL, fixed client id and credential.
func (s Settings) Source(log *slog.Logger) ingest.SourceConfig {
	return ingest.SourceConfig{Broker: s.Broker, ClientID: s.ClientID, Username: s.Username, Password: s.Password, Logger: log}
}

// Config turns the section into the embedded broker's Config: the
// listeners, the TLS certificate loaded, and with mqtt.auth ledger an Auth
// over the ledger l, whose service account (firewatch's own, client id
// mqtt.client_id) gets a random secret made now that never leaves the
// process. With mqtt.auth none it warns on log that every client is
// admitted. The caller adds the Hooks.
func (s Settings) Config(l *devices.Ledger, reg prometheus.Registerer, log *slog.Logger) (Config, error) {
	c := Config{Addr: s.Listen, TLSAddr: s.TLSListen, Logger: log, MaxConnections: s.MaxConnections, Registerer: reg}
	if s.TLSListen != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
		if err != nil {
			return Config{}, fmt.Errorf("mqtt.tls_cert/tls_key: %w", err)
		}
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	switch s.Auth {
	case "none":
		log.Warn("embedded broker admits every client to every topic (mqtt.auth: none): any client can publish as any device")
	default:
		a, err := NewAuth(AuthConfig{
			Ledger: l, ServicePassword: GenerateSecret() + GenerateSecret(), ServiceClientID: s.ClientID,
			BridgeUser: s.BridgeUser, BridgeSecretHash: s.BridgeSecretHash, Registerer: reg,
			Logger: log.With("component", "broker"),
		})
		if err != nil {
			return Config{}, err
		}
		c.Auth = a
	}
	return c, nil
}
