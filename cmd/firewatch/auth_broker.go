package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/devices"
)

// startEmbeddedBroker starts the embedded broker with the ledger's
// credentials and topic ACLs (mqtt.auth: ledger), and src consuming uplink
// in process. firewatch needs no client of its own there: the service
// account gets a random secret made now, which never leaves the process.
func startEmbeddedBroker(cfg *Config, l *devices.Ledger, reg prometheus.Registerer, log *slog.Logger, src *broker.InlineSource) (*mochi.Server, error) {
	bc := broker.Config{Addr: cfg.MQTT.Listen, TLSAddr: cfg.MQTT.TLSListen, Logger: log, Hooks: []mochi.Hook{src},
		MaxConnections: cfg.MQTT.MaxConnections}
	if cfg.MQTT.TLSListen != "" {
		cert, err := tls.LoadX509KeyPair(cfg.MQTT.TLSCert, cfg.MQTT.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls_cert/tls_key: %w", err)
		}
		bc.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	switch cfg.MQTT.Auth {
	case "none":
		log.Warn("embedded broker admits every client to every topic (mqtt.auth: none): any client can publish as any device")
	default:
		a, err := broker.NewAuth(broker.AuthConfig{
			Ledger: l, ServicePassword: broker.GenerateSecret() + broker.GenerateSecret(), ServiceClientID: cfg.MQTT.ClientID,
			BridgeUser: cfg.MQTT.BridgeUser, BridgeSecretHash: cfg.MQTT.BridgeSecretHash, Registerer: reg,
			Logger: log.With("component", "broker"),
		})
		if err != nil {
			return nil, err
		}
		bc.Auth = a
	}
	return broker.Start(bc)
}
