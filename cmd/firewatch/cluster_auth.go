package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/devices"
)

// clusterAuth sets up cluster mode's auth callout (issue 15,
// docs/cluster.md "Credentials"): with cluster.callout_seed, src answers
// the NATS servers' authorization requests of devices and gateways with the
// embedded broker's check (broker.Auth, following the live registry) and
// returns that Auth; without it, nil (the nodes admit whom their own
// configuration admits).
func clusterAuth(c cluster.Config, src *cluster.Source, l *devices.Ledger, reg prometheus.Registerer, log *slog.Logger) (*broker.Auth, error) {
	if c.CalloutSeed == "" {
		return nil, nil
	}
	var auth *broker.Auth
	co, err := cluster.NewCallout(c, func(user, clientID, remote string, password []byte) ([]string, []string, error) {
		g, err := auth.Authorize(user, clientID, remote, password)
		return g.Publish, g.Subscribe, err
	}, reg, log.With("component", "auth"))
	if err != nil {
		return nil, err
	}
	// The instances share their admissions, under one key, so that a
	// reconnect lands on the fast path whichever instance answers it.
	auth, err = broker.NewAuth(broker.AuthConfig{Ledger: l, Registerer: reg, Logger: log.With("component", "auth"), CacheKey: co.CacheKey()})
	if err != nil {
		return nil, err
	}
	co.Share(auth)
	src.Authorize(co)
	return auth, nil
}

// kickRemoved closes, through the nodes' MQTT, the connections of devices
// and gateways removed from the registry or whose secret changed (cluster
// mode with the auth callout).
func kickRemoved(c cluster.Config, log *slog.Logger) func([]string) {
	return func(ids []string) {
		if n := cluster.Kick(c, ids, log); n > 0 {
			log.Info("registry change: connections of removed devices or gateways, or of changed secrets, closed", "clients", n)
		}
	}
}
