package ingest

import (
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// StartBroker starts the embedded MQTT broker (mochi-mqtt) on addr, for the
// zero-setup single-node deployment. Sessions and queued QoS 1 messages live
// in memory: they survive a client's reconnect, not a restart of firewatch.
// It accepts every client; per-device credentials and topic ACLs come with
// the hardening issue (docs/security.md).
func StartBroker(addr string, log *slog.Logger) (*mochi.Server, error) {
	s := mochi.New(&mochi.Options{
		Logger: log.With("component", "broker"),
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return nil, fmt.Errorf("embedded broker: listen %s: %w", addr, err)
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return s, nil
}
