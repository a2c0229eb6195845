package main

import (
	"context"
	"github.com/firewatch-iot/firewatch/pipeline"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/bridge"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/gb45839"
)

// NB-IoT detectors through CTWing, OneNET and GB/T 45839 peers
// (docs/nbiot.md): the bridge's pushes enter the same pipeline as MQTT
// messages, on the pushing device's own topics, and a push is answered 200
// only once the pipeline has taken its messages and the alarm store has
// committed the events they caused (alarms.Manager.Sync), as a QoS 1
// PUBACK is.

// gbLostWithin is how soon GB/T 45839 (issue 14) wants a lost detector shown.
const gbLostWithin = 24 * time.Hour

// startNBIoT builds the bridge when a platform is configured, mounts its
// endpoints on mux (or on its own listener, nbiot.listen) and the pending
// entries at GET /api/v1/nbiot/pending (admin).
func (s *service) startNBIoT(mux *http.ServeMux, reg prometheus.Registerer) error {
	if !s.cfg.NBIoT.Enabled() {
		// No platform: the ledger's bindings are still checked, so that a
		// mistake shows now and not when a platform is configured.
		return checkNBIoT(s.cfg, s.ledger)
	}
	if l := s.cfg.NBIoT.Listen; l != "" && s.cfg.NBIoT.TLSCert == "" && !loopback(l) {
		s.log.Warn("NB-IoT pushes on a public address without TLS: the CTWing and GB/T 45839 path tokens travel in clear text; set nbiot.tls_cert and nbiot.tls_key", "listen", l)
	}
	b, err := bridge.New(s.cfg.NBIoT, bridge.Options{
		Ledger: s.ledger, Handle: s.nbiotHandle, Registerer: reg, Logger: s.log.With("component", "nbiot"), Vitals: s.vitals,
	})
	if err != nil {
		return err
	}
	if b.Listening() {
		err = b.Start()
	} else {
		err = b.Mount(mux)
	}
	if err != nil {
		b.Stop(context.Background())
		return err
	}
	s.nbiot = b
	mux.HandleFunc("GET /api/v1/nbiot/pending", s.alarms.Require(alarms.RoleAdmin, b.ServePending))
	s.warnNBIoTLiveness()
	return nil
}

// nbiotHandle is the bridge's HandleFunc: the pipeline, which returns once
// the readings are in the writer's batch and what the message raised is
// stored (Pipeline.Handle); pipeline.ErrNotStored when they may not be
// (the bridge answers 503: the platform sends the push again).
func (s *service) nbiotHandle(topic string, payload []byte) error {
	if s.forward != nil { // cluster mode: into the device's partition (cluster_forward.go)
		return s.forward.Forward(originNBIoT, true, topic, payload)
	}
	return s.pipe.Take(pipeline.Message{Origin: originNBIoT, Topic: topic, Payload: payload, Relayed: true})
}

// originNBIoT names the NB-IoT platforms' pushes among the pipeline's
// sources.
const originNBIoT pipeline.Origin = "nbiot"

// stopNBIoT refuses further pushes (503: the platforms retry) and waits for
// those in the pipeline; it runs before the alarm manager stops.
func (s *service) stopNBIoT() {
	if s.nbiot == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s.nbiot.Stop(ctx)
}

// warnNBIoTLiveness logs the NB-IoT detectors whose liveness cannot meet
// GB/T 45839 (lost communication shown within 24 h) without false offline
// alarms: with nbiot.lost_within off, those whose heartbeat × missed is
// longer; with it on, those whose reporting period (heartbeat) is not
// shorter than it, which leaves no margin for a late report. Give the
// ledger entry the detector's real period (docs/nbiot.md, "Liveness").
func (s *service) warnNBIoTLiveness() {
	kind := [devices.NumKinds]time.Duration{devices.KindElectrical: s.cfg.Liveness.Electrical,
		devices.KindSmoke: s.cfg.Liveness.Smoke, devices.KindHydrant: s.cfg.Liveness.Hydrant, devices.KindCharger: s.cfg.Liveness.Charger}
	within := s.cfg.NBIoT.LostWithin
	late, tight := 0, 0
	for i := range s.ledger.Devices {
		d := &s.ledger.Devices[i]
		if d.NBIoT == nil {
			continue
		}
		hb := d.Heartbeat
		if hb == 0 {
			hb = kind[d.Kind]
		}
		switch {
		case within == 0 && hb*time.Duration(s.cfg.Liveness.Missed) > gbLostWithin:
			late++
		case within > 0 && hb >= within:
			tight++
		}
	}
	if late > 0 {
		s.log.Warn("NB-IoT detectors would be shown offline later than GB/T 45839's 24 h (nbiot.lost_within is off)", "devices", late)
	}
	if tight > 0 {
		s.log.Warn("NB-IoT detectors report no more often than nbiot.lost_within: one late report shows them offline; set their ledger heartbeat to their real period, or have them report more often",
			"devices", tight, "lost_within", within)
	}
}

// checkNBIoT checks the ledger's NB-IoT bindings against the product codecs
// (firewatch check, and a start without a platform).
func checkNBIoT(cfg *Config, l *devices.Ledger) error {
	_, _, err := bridge.CheckLedger(cfg.NBIoT, l)
	if err == nil && cfg.NBIoT.Forward.Enabled() { // nbiot_forward.go
		_, err = gb45839.CheckForward(l)
	}
	return err
}
