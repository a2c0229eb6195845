package gateway

import (
	"sync"
	"time"
)

// busHealth is whether a bus works: its port is open and at least one of
// its devices answers. A dead bus (an unplugged cable or adapter, a bus
// shorted by a failed device, a power cut to the slaves) is reported in
// the gateway's status at once, so that firewatch raises one fault for the
// bus naming its devices instead of one offline alarm per device much
// later (docs/gateway.md, "Bus faults").
type busHealth struct {
	mu    sync.Mutex
	ok    bool
	since int64  // Unix ms of the last change
	err   string // why the bus is down
}

// BusState is one bus in the gateway's status message.
type BusState struct {
	Port string `json:"port"`
	OK   bool   `json:"ok"`
	// Since is when the bus last went up or down (Unix ms).
	Since int64  `json:"since"`
	Error string `json:"error,omitempty"`
	// Devices are the ids of the devices on the bus.
	Devices []string `json:"devices"`
}

// checkHealth updates the bus's health after a poll or a failed port
// open, and publishes the status when it changed.
func (g *Gateway) checkHealth(b *bus) {
	ok, why := true, ""
	if err := b.port.down(); err != nil {
		ok, why = false, "serial port: "+err.Error()
	} else if len(b.devices) > 0 {
		ok, why = false, "no device on the bus answers"
		for _, d := range b.devices {
			if !d.offline.Load() {
				ok, why = true, ""
				break
			}
		}
	}
	h := &b.health
	h.mu.Lock()
	changed := h.ok != ok
	if changed {
		h.ok, h.since = ok, time.Now().UnixMilli()
	}
	h.err = why
	h.mu.Unlock()
	if !changed {
		return
	}
	if ok {
		g.log.Info("bus back up", "port", b.cfg.Port)
	} else {
		g.log.Error("bus down", "port", b.cfg.Port, "reason", why, "devices", len(b.devices))
	}
	go g.publishStatus(true)
}

// busStatus returns the state of every bus, for the status message.
func (g *Gateway) busStatus() []BusState {
	out := make([]BusState, 0, len(g.buses))
	for _, b := range g.buses {
		b.health.mu.Lock()
		s := BusState{Port: b.cfg.Port, OK: b.health.ok, Since: b.health.since, Error: b.health.err}
		b.health.mu.Unlock()
		for _, d := range b.devices {
			s.Devices = append(s.Devices, d.cfg.ID)
		}
		out = append(out, s)
	}
	return out
}

// BusOK reports whether bus i is up.
func (g *Gateway) BusOK(i int) bool {
	h := &g.buses[i].health
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok
}
