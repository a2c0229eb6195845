package main

import (
	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/bridge"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/gb45839"
)

// nbiotCentre wires nbiot.forward (docs/nbiot.md, "Forwarding to a 中心级
// platform"): the alarm manager's centre, whose status_info reports carry
// the signal and battery the bridge last saw. nil when off.
func (s *service) nbiotCentre() (*alarms.Centre, error) {
	f := s.cfg.NBIoT.Forward
	if !f.Enabled() {
		return nil, nil
	}
	noSerial, err := gb45839.CheckForward(s.ledger)
	if err != nil {
		return nil, err
	}
	if len(noSerial) > 0 {
		s.log.Warn("NB-IoT detectors without nbiot.serial are not forwarded to the centre (GB/T 45839 names a device by its Appendix B id)",
			"devices", len(noSerial), "first", noSerial[0])
	}
	s.vitals = bridge.NewVitals(s.ledger)
	return alarms.NewCentre(f.URL, gb45839.NewForwarder(f, s.vitals.Get))
}
