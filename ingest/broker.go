package ingest

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	// Addr is the plain TCP listener; firewatch's own client connects here,
	// so keep it on loopback when devices use TLS.
	Addr string
	// TLSAddr, when set, is a second listener speaking MQTT over TLS with
	// TLSConfig.
	TLSAddr   string
	TLSConfig *tls.Config
	// Auth checks credentials and topic ACLs; nil admits every client to
	// every topic (mqtt.auth: none, for a closed test network only).
	Auth   *Auth
	Logger *slog.Logger
	// Hooks are added after Auth, before the broker serves: an
	// InlineSource, so that firewatch consumes in process.
	Hooks []mochi.Hook
}

// MaxPacket is the largest MQTT packet the embedded broker takes; a client
// sending a larger one is disconnected. It is above MaxPayload so that the
// decoder still counts payloads between the two as too_large.
const MaxPacket = 4 * MaxPayload

// StartBroker starts the embedded MQTT broker (mochi-mqtt), for the
// zero-setup single-node deployment. Sessions and queued QoS 1 messages live
// in memory: they survive a client's reconnect, not a restart of firewatch.
func StartBroker(cfg BrokerConfig) (*mochi.Server, error) {
	// The inline client lets firewatch publish into its own broker (linkage
	// commands, alarm fan-out) without a connection or credential; its
	// publishes skip the ACL hook, which guards what clients send.
	log := cfg.Logger.With("component", "broker")
	if cfg.Auth != nil {
		log = slog.New(refusalFilter{log.Handler()}) // Auth logs refusals itself
	}
	opts := &mochi.Options{Logger: log, InlineClient: true}
	opts.Capabilities = mochi.NewDefaultServerCapabilities()
	opts.Capabilities.MaximumPacketSize = MaxPacket
	s := mochi.New(opts)
	var err error
	if cfg.Auth != nil {
		err = s.AddHook(cfg.Auth, nil)
	} else {
		err = s.AddHook(new(auth.AllowHook), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	for _, h := range cfg.Hooks {
		if err := s.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Addr})); err != nil {
		return nil, fmt.Errorf("embedded broker: listen %s: %w", cfg.Addr, err)
	}
	if cfg.TLSAddr != "" {
		if cfg.TLSConfig == nil {
			return nil, fmt.Errorf("embedded broker: TLS listener %s without a certificate", cfg.TLSAddr)
		}
		if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tls", Address: cfg.TLSAddr, TLSConfig: cfg.TLSConfig})); err != nil {
			s.Close()
			return nil, fmt.Errorf("embedded broker: listen %s: %w", cfg.TLSAddr, err)
		}
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return s, nil
}
