package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/cluster"
	gb26875server "github.com/firewatch-iot/firewatch/ingest/gb26875/server"
	"github.com/firewatch-iot/firewatch/pipeline"
)

// Issue 15: in cluster mode the NB-IoT platforms' pushes and the UITDs'
// GB/T 26875.3 frames reach whichever instance the platform or the UITD
// connects to. That instance does not evaluate them: it forwards each
// message into its device's partition of the stream (cluster.Forwarder)
// and answers the push (200) or confirms the frame only once the stream
// has stored it; the partition's owner evaluates it in order with the
// device's other messages. A message the stream did not take is refused
// (503, no 确认) and the sender sends it again. The UITD's TCP connection,
// its 查岗 and reads stay on the instance that holds it.

// startForwarder opens the forwarder's NATS connection in cluster mode (a
// no-op otherwise); before the NB-IoT bridge and the GB/T 26875.3 server.
func (s *service) startForwarder(reg prometheus.Registerer, log *slog.Logger) error {
	if !s.cfg.Cluster.Enabled || (!s.cfg.NBIoT.Enabled() && !s.cfg.GB26875.Enabled()) {
		return nil
	}
	f, err := cluster.NewForwarder(s.cfg.Cluster, reg, log.With("component", "cluster"))
	if err != nil {
		return err
	}
	s.forward = f
	return nil
}

// gbHandler is the GB/T 26875.3 server's entry: the forwarder in cluster
// mode, the pipeline otherwise; either may refuse a message, and the frame
// is then not confirmed.
func (s *service) gbHandler() gb26875server.Handler {
	if s.forward != nil {
		return gb26875server.CheckedHandlerFunc(s.forward.Handler(originGB26875, false))
	}
	return gb26875server.CheckedHandlerFunc(pipeline.CheckedHandler(s.pipe, originGB26875))
}

// closeForwarder closes the forwarder's connection, after the NB-IoT bridge
// and the GB/T 26875.3 server stopped.
func (s *service) closeForwarder() {
	if s.forward != nil {
		s.forward.Close()
	}
}
