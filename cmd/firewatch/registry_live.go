package main

import (
	"errors"
	"fmt"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/pipeline"
)

// followRegistry makes every consumer of the registry follow s.registry
// (issue 18): a change applied to it (devices.Live.Apply) is in force
// everywhere when Apply returns. The order matters, subscribers run in
// it:
//
//  1. the InfluxDB annotations' tags (annotations), so that a new
//     device's first alarm is annotated;
//  2. the pipeline, which adopts the change between two messages: a new
//     device's messages are decoded and evaluated from then on, a removed
//     device's rejected as unknown, its liveness stopped; in cluster mode
//     then the partitions (cluster.Source.Follow), so that the owner of a
//     new device's partition watches its liveness;
//  3. the alarm manager, which reads the snapshot in force on every use
//     (a new station is routable at once), then closes the removed
//     devices' open alarms — after the pipeline, so that nothing it still
//     raised is left open — and sends the pushes waiting for a station to
//     its new endpoint;
//  4. the embedded broker's authentication, after the pipeline: a new
//     device is admitted once its messages are taken, a removed one's
//     connection closed;
//  5. the NB-IoT bridge's index of bound detectors.
//
// The responder, the devices API and the service's own lookups read the
// snapshot in force (s.registry.Load()) on each request. The GB/T 26875.3
// server's UITD table is not part of a registry change (devices.Change has
// no UITDs): it changes with a restart; the devices it maps to are
// resolved by the pipeline, which rejects a removed one.
func (s *service) followRegistry(annotations func(l *devices.Ledger, remake bool)) {
	s.registry.Subscribe(func(old, l *devices.Ledger, d *devices.Diff) {
		if remake := pipeline.TagsEdited(old, l, d); remake || len(d.Added) > 0 {
			annotations(l, remake)
		}
	})
	s.pipe.Follow(s.registry)
	if src, ok := s.source.(*cluster.Source); ok {
		// Cluster mode: an added device belongs to its partition at once
		// (its owner watches its liveness), a removed one to none.
		src.Follow(s.registry)
	}
	s.alarms.Follow(s.registry)
	if s.brokerAuth != nil && s.broker != nil {
		s.brokerAuth.Follow(s.registry, s.broker)
	} else if s.brokerAuth != nil { // cluster mode's auth callout (cluster_auth.go)
		s.brokerAuth.FollowLive(s.registry, kickRemoved(s.cfg.Cluster, s.log))
	}
	if s.nbiot != nil {
		s.registry.Subscribe(func(_, l *devices.Ledger, _ *devices.Diff) {
			if err := s.nbiot.Adopt(l); err != nil {
				s.log.Error("registry change: NB-IoT bindings not in force (the bridge keeps the previous ones)", "err", err)
			}
		})
	}
}

// checkRegistryChange is what a registry change must pass, beyond
// devices.Ledger.Apply's validation, before it is committed (for the
// registry's store: validate, check, write, Live.Apply): the devices it
// adds or edits have rule overrides that compile against the rules in
// force, and every secret_hash it sets is a well-formed hash (the embedded
// broker could not admit the entry otherwise). l and d are what
// Live.Load().Apply returned; the problems come as one *devices.LoadError.
func (s *service) checkRegistryChange(l *devices.Ledger, d *devices.Diff) error {
	var probs []devices.Problem
	var le *devices.LoadError
	if err := s.pipe.CheckDevices(l, d); errors.As(err, &le) {
		probs = append(probs, le.Problems...)
	} else if err != nil {
		return err
	}
	for _, is := range [][]devices.Index{d.Added, d.Edited} {
		for _, i := range is {
			if dv := &l.Devices[i]; !dv.Removed && dv.SecretHash != "" {
				if err := broker.CheckSecretHash(dv.SecretHash); err != nil {
					probs = append(probs, devices.Problem{File: l.File, Reason: fmt.Sprintf("device %q: secret_hash: %v", dv.ID, err),
						Section: "devices", Index: -1, ID: dv.ID, Field: "secret_hash"})
				}
			}
		}
	}
	for _, id := range d.Gateways {
		if g := l.Gateways[id]; g != nil && g.SecretHash != "" {
			if err := broker.CheckSecretHash(g.SecretHash); err != nil {
				probs = append(probs, devices.Problem{File: l.File, Reason: fmt.Sprintf("gateway %q: secret_hash: %v", id, err),
					Section: "gateways", Index: -1, ID: id, Field: "secret_hash"})
			}
		}
	}
	if len(probs) > 0 {
		return &devices.LoadError{Problems: probs}
	}
	return nil
}
