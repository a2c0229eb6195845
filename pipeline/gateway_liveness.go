package pipeline

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// A gateway's own liveness (issue 14): firegate publishes its status every
// status_interval (1 min by default) and its batches as they come, so a
// gateway that says nothing while its devices' grace runs out is the cause
// of their silence, not N separate faults. When a device behind a gateway
// goes offline and the gateway itself has been silent for at least that
// device's grace, the gateway's fault (rule {kind}.gateway_offline, the one
// its last will raises) is raised once, naming the gateway, how many
// devices it serves and their ids, and every device of the gateway is held
// back as for a dead bus (edge_faults.go). The first message from the
// gateway (a status or a batch) clears it and re-arms its devices: one
// still silent a grace later goes offline on its own.

// gwLive is one gateway's liveness.
type gwLive struct {
	// heard is when the gateway last published (Unix ms, receive time): a
	// status or a batch; its last will, published by the broker for it,
	// is not a word from it. Start counts as heard.
	heard atomic.Int64
	// down says the gateway's fault is active (last will or silence):
	// the next word from it clears it.
	down atomic.Bool
	// known says the gateway spoke since start.
	known atomic.Bool
}

// initGateways tracks every gateway its devices name, heard at start.
func (ef *edgeFaults) initGateways(start int64) {
	ef.gwStart = start
	ef.gws = map[string]*gwLive{}
	for i := range ef.ledger.Devices {
		if gw := ef.ledger.Devices[i].Gateway; gw != "" && ef.gws[gw] == nil {
			g := &gwLive{}
			g.heard.Store(start)
			ef.gws[gw] = g
		}
	}
}

// isGatewayBatch reports whether topic is fw/v1/up/gw/{id}/batch and
// returns the id.
func isGatewayBatch(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "fw/v1/up/gw/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/batch")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// Heard records a batch from gateway gw at now, and clears its fault if
// it was down. A gateway up costs an atomic store and load per batch.
func (ef *edgeFaults) Heard(gw string, now int64) {
	g := ef.gws[gw]
	if g == nil {
		return
	}
	g.heard.Store(now)
	if g.known.Load() && !g.down.Load() {
		return
	}
	events := ef.firstNews(gw, g, now)
	ef.mu.Lock()
	if g.down.Swap(false) {
		events = ef.up(events, gw+"|*", now)
	}
	ef.mu.Unlock()
	ef.submit(events)
}

// heardStatus records a status of gateway gw (not its last will); ef.mu
// is held: Status clears the fault itself.
func (ef *edgeFaults) heardStatus(gw string, now int64, events []rules.Event) []rules.Event {
	g := ef.gws[gw]
	if g == nil {
		return events
	}
	g.heard.Store(now)
	g.down.Store(false)
	return append(events, ef.firstNews(gw, g, now)...)
}

// gatewayWill marks gateway gw down after its last will; ef.mu is held.
func (ef *edgeFaults) gatewayWill(gw string) {
	if g := ef.gws[gw]; g != nil {
		g.down.Store(true)
	}
}

// firstNews is the first word from gateway gw since start: the gateway
// fault a previous run may have left open is cleared (a no-op if none).
func (ef *edgeFaults) firstNews(gw string, g *gwLive, now int64) []rules.Event {
	if g.known.Swap(true) {
		return nil
	}
	devs := ef.gatewayDevices(gw)
	if len(devs) == 0 {
		return nil
	}
	a := ef.ledger.Device(devs[0])
	r := &rules.Rule{ID: a.Kind.String() + gatewayRuleSuffix, Kind: a.Kind, Metric: anchorMetric(a.Kind),
		Op: rules.OpEvent, Severity: rules.SeverityFault, NoteZH: fmt.Sprintf("网关 %s 离线", gw)}
	return []rules.Event{{Rule: r, Device: devs[0], Transition: rules.Clear, Since: now, Time: now}}
}

// heldOrSilent returns the fault that holds back device d's offline alarm:
// its bus's or gateway's, or, when its gateway has been silent for d's
// grace, the gateway's, made active here. A gateway not heard since start
// is taken for silent only for a device not heard since start either: a
// device that spoke on its own topic meanwhile did not need its gateway.
// ef.mu is held.
func (ef *edgeFaults) heldOrSilent(d devices.Index, lastSeen, now int64) *busFault {
	if bf := ef.held[d]; bf != nil || ef.live == nil {
		return bf
	}
	gw := ef.ledger.Device(d).Gateway
	g := ef.gws[gw]
	if g == nil {
		return nil
	}
	heard := g.heard.Load()
	if heard+ef.live.Status(d).Grace.Milliseconds() > now || !g.known.Load() && lastSeen > ef.gwStart {
		return nil // the gateway speaks: the device itself is silent
	}
	devs := ef.gatewayDevices(gw)
	note := fmt.Sprintf("网关 %s 已%s无任何上报（离线），其下 %d 台设备无法监测：%s", gw, durationZH(now-heard), len(devs), ef.names(devs))
	ef.down(nil, gw+"|*", gatewayRuleSuffix, devs, note, heard, true)
	g.down.Store(true)
	ef.log.Warn("gateway silent: one offline fault for its devices, their offline alarms held back", "gateway", gw, "devices", len(devs), "silent", time.Duration(now-heard)*time.Millisecond)
	return ef.held[d]
}

// durationZH writes a silence for dispatchers: "12 分钟", "3 小时".
func durationZH(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf(" %d 天", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf(" %d 小时", int(d/time.Hour))
	case d >= time.Minute:
		return fmt.Sprintf(" %d 分钟", int(d/time.Minute))
	}
	return fmt.Sprintf(" %d 秒", int(d/time.Second))
}
