package main

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/bridge"
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
		return nil
	}
	b, err := bridge.New(s.cfg.NBIoT, bridge.Options{
		Ledger: s.ledger, Handle: s.nbiotHandle, Registerer: reg, Logger: s.log.With("component", "nbiot"),
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

// nbiotHandle is the bridge's HandleFunc: the pipeline, then the alarm
// store's commit of what the message raised.
func (s *service) nbiotHandle(topic string, payload []byte) error {
	s.pipe.handle(topic, payload)
	s.alarms.Sync()
	return nil
}

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

// warnNBIoTLiveness logs the NB-IoT detectors that the configured liveness
// would show lost later than GB/T 45839's 24 h: a detector reporting once a
// day, offline after liveness.missed (2) silent periods, is shown lost after
// 48 h. Set the ledger entry's heartbeat to the detector's real reporting
// period, or report more often (docs/nbiot.md, "Liveness").
func (s *service) warnNBIoTLiveness() {
	kind := [devices.NumKinds]time.Duration{devices.KindElectrical: s.cfg.Liveness.Electrical,
		devices.KindSmoke: s.cfg.Liveness.Smoke, devices.KindHydrant: s.cfg.Liveness.Hydrant, devices.KindCharger: s.cfg.Liveness.Charger}
	late, worst := 0, time.Duration(0)
	for i := range s.ledger.Devices {
		d := &s.ledger.Devices[i]
		if d.NBIoT == nil {
			continue
		}
		hb := d.Heartbeat
		if hb == 0 {
			hb = kind[d.Kind]
		}
		if g := hb * time.Duration(s.cfg.Liveness.Missed); g > gbLostWithin {
			late++
			worst = max(worst, g)
		}
	}
	if late > 0 {
		s.log.Warn("NB-IoT detectors would be shown offline later than GB/T 45839's 24 h: give their ledger entries the real reporting period (heartbeat: 12h reports twice a day) or lower liveness.missed",
			"devices", late, "offline_after", worst)
	}
}
