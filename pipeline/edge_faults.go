package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// edgeFaults turns what a gateway says about its edge into fault (故障)
// alarms, through the alarm path like any other alarm (issue 24):
//
//   - a metric sent as null (the register map found a sentinel: a sensor not
//     connected) raises one fault for that device, channel and metric,
//     cleared by the next value; the message's other metrics are evaluated
//     as usual;
//   - a bus the gateway reports down in its status (fw/v1/up/gw/{id}/status,
//     "buses") raises one fault for the bus, on its first device, naming
//     every device on it; a gateway's last will raises one for the gateway.
//     While it is open the offline (离线) alarms of those devices are held
//     back: one alarm for one cause, not one per device ten minutes later.
//
// It sits between liveness and the offline alarms (a devices.LivenessSink)
// to hold those back. devices and alarms know nothing of it.
type edgeFaults struct {
	ledger  *devices.Ledger
	sink    Events
	offline devices.LivenessSink // the offline alarms, for devices not held
	live    *devices.Liveness    // re-armed for held devices when their bus is back
	log     *slog.Logger
	absent  atomic.Int64 // values received as null
	now     func() int64

	sensorRules map[sensorRuleKey]*rules.Rule

	mu sync.Mutex
	// openSensors are the sensor faults raised and not cleared; openDev
	// counts them per device, so that the hot path skips the lock for a
	// device with none (not only while the whole fleet has none: one
	// unplugged sensor in a county must not put every message through the
	// lock).
	openSensors map[sensorKey]bool
	openDev     []atomic.Int32
	buses       map[string]*busFault // by gateway + "|" + port ("*" for the gateway)
	gwBuses     map[string][]string  // last status's bus keys by gateway
	held        map[devices.Index]*busFault
	heldSince   map[devices.Index]int64 // offline reports held back: last seen
	rearm       []devices.Index         // held devices to re-arm once ef.mu is released
	gws         map[string]*gwLive      // gateways' own liveness (gateway_liveness.go)
	gwStart     int64
}

type sensorRuleKey struct {
	kind   devices.Kind
	metric devices.Metric
}

type sensorKey struct {
	dev    devices.Index
	ch     uint8
	metric devices.Metric
}

// busFault is one bus (or a whole gateway) reported down.
type busFault struct {
	rule    *rules.Rule
	anchor  devices.Index // the device the alarm is raised on
	devices []devices.Index
	since   int64
	active  bool // down: its devices' offline alarms are held back
	raised  bool // its alarm is raised (a gateway's at the first held offline)
	seen    bool // a status named it since start
}

// sensorRuleSuffix ends the rule id of sensor faults: "electrical.cable_temp_c.sensor_absent".
const sensorRuleSuffix = ".sensor_absent"

// busRuleSuffix ends the rule id of bus faults, gatewayRuleSuffix that of
// a gateway's last will: "electrical.bus_fault", "electrical.gateway_offline".
const (
	busRuleSuffix     = ".bus_fault"
	gatewayRuleSuffix = ".gateway_offline"
)

func newEdgeFaults(l *devices.Ledger, sink Events, offline devices.LivenessSink, log *slog.Logger) *edgeFaults {
	ef := &edgeFaults{
		ledger: l, sink: sink, offline: offline, log: log,
		sensorRules: map[sensorRuleKey]*rules.Rule{},
		openSensors: map[sensorKey]bool{},
		openDev:     make([]atomic.Int32, len(l.Devices)),
		buses:       map[string]*busFault{},
		gwBuses:     map[string][]string{},
		held:        map[devices.Index]*busFault{},
		heldSince:   map[devices.Index]int64{},
		now:         func() int64 { return time.Now().UnixMilli() },
	}
	ef.initGateways(ef.now())
	for i := range devices.Catalog {
		m := devices.Metric(i)
		info := m.Info()
		if info.Name == "" {
			continue
		}
		ef.sensorRules[sensorRuleKey{info.Kind, m}] = &rules.Rule{
			ID: info.Kind.String() + "." + info.Name + sensorRuleSuffix, Kind: info.Kind, Metric: m,
			Op: rules.OpEvent, Severity: rules.SeverityFault, NoteZH: info.ZH + " 传感器未接或故障，无有效读数",
		}
	}
	return ef
}

// Readings is called by the pipeline for each accepted message: absent
// metrics raise their sensor fault, present ones clear an open one. It
// costs an atomic load for a device with no open sensor fault and
// nothing absent.
func (ef *edgeFaults) Readings(d *devices.Device, ch uint8, t int64, present, absent []devices.Metric) {
	if len(absent) == 0 && ef.openDev[d.Index].Load() == 0 {
		return
	}
	ef.absent.Add(int64(len(absent)))
	var events []rules.Event
	ef.mu.Lock()
	for _, m := range absent {
		k := sensorKey{d.Index, ch, m}
		if ef.openSensors[k] {
			continue
		}
		if r := ef.sensorRules[sensorRuleKey{d.Kind, m}]; r != nil {
			ef.openSensors[k] = true
			ef.openDev[d.Index].Add(1)
			events = append(events, rules.Event{Rule: r, Device: d.Index, Channel: ch, Transition: rules.Raise, Value: 1, Since: t, Time: t})
		}
	}
	if len(ef.openSensors) > 0 {
		for _, m := range present {
			k := sensorKey{d.Index, ch, m}
			if ef.openSensors[k] {
				delete(ef.openSensors, k)
				ef.openDev[d.Index].Add(-1)
				events = append(events, rules.Event{Rule: ef.sensorRules[sensorRuleKey{d.Kind, m}], Device: d.Index, Channel: ch, Transition: rules.Clear, Since: t, Time: t})
			}
		}
	}
	ef.mu.Unlock()
	for _, ev := range events {
		ef.sink.Submit(ev)
	}
}

// gatewayStatus is the part of a gateway's status firewatch reads.
type gatewayStatus struct {
	TS     int64 `json:"ts"`
	Online *bool `json:"online"`
	Buses  []struct {
		Port    string   `json:"port"`
		OK      bool     `json:"ok"`
		Since   int64    `json:"since"`
		Error   string   `json:"error"`
		Devices []string `json:"devices"`
	} `json:"buses"`
}

// isGatewayStatus reports whether topic is fw/v1/up/gw/{id}/status and
// returns the id.
func isGatewayStatus(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "fw/v1/up/gw/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/status")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// Status handles a gateway's status message or last will. A malformed one
// is logged and ignored (the gateway authenticated; it is a bug, not an
// attack).
func (ef *edgeFaults) Status(gw string, payload []byte, now int64) {
	gw = ef.ledger.GatewayID(gw)
	if gw == "" {
		return
	}
	var st gatewayStatus
	if err := json.Unmarshal(payload, &st); err != nil {
		ef.log.Warn("gateway status is not JSON", "gateway", gw, "err", err)
		return
	}
	t := now
	if st.TS > 0 {
		t = st.TS
	}
	var events []rules.Event
	ef.mu.Lock()
	if st.Online != nil && !*st.Online {
		// The last will ({"online":false}, no ts) means the box or its
		// uplink died: its devices cannot be watched. A clean stop (with
		// ts: an operator's restart) raises nothing.
		if st.TS == 0 {
			devs := ef.gatewayDevices(gw)
			note := fmt.Sprintf("网关 %s 离线（断电或上行网络中断），其下 %d 台设备无法监测：%s", gw, len(devs), ef.names(devs))
			events = ef.down(events, gw+"|*", gatewayRuleSuffix, devs, note, t, true)
			ef.gatewayWill(gw)
		} else {
			events = ef.heardStatus(gw, now, events)
		}
	} else {
		events = ef.heardStatus(gw, now, events)
		events = ef.up(events, gw+"|*", t)
		keys := make([]string, 0, len(st.Buses))
		for _, b := range st.Buses {
			key := gw + "|" + b.Port
			keys = append(keys, key)
			var devs []devices.Index
			for _, id := range b.Devices {
				if d, ok := ef.ledger.LookupID(id); ok && d.Gateway == gw {
					devs = append(devs, d.Index)
				}
			}
			if b.OK {
				if ef.buses[key] == nil && len(devs) > 0 {
					// First news of this bus since start: clear the fault a
					// previous run may have left open (a no-op if none).
					a := ef.ledger.Device(devs[0])
					r := &rules.Rule{ID: a.Kind.String() + busRuleSuffix, Kind: a.Kind, Metric: anchorMetric(a.Kind),
						Op: rules.OpEvent, Severity: rules.SeverityFault, NoteZH: fmt.Sprintf("网关 %s 通信总线 %s 故障", gw, b.Port)}
					events = append(events, rules.Event{Rule: r, Device: devs[0], Transition: rules.Clear, Since: t, Time: t})
				}
				events = ef.up(events, key, t)
				continue
			}
			since := t
			if b.Since > 0 {
				since = b.Since
			}
			note := fmt.Sprintf("网关 %s 通信总线 %s 故障（%s），该总线上 %d 台设备无法监测：%s", gw, b.Port, busReasonZH(b.Error), len(devs), ef.names(devs))
			events = ef.down(events, key, busRuleSuffix, devs, note, since, false)
		}
		ef.gwBuses[gw] = keys
	}
	ef.mu.Unlock()
	ef.submit(events)
}

// busReasonZH names the gateway's reason for dispatchers.
func busReasonZH(reason string) string {
	switch {
	case strings.HasPrefix(reason, "serial port"):
		return "串口/RS-485 适配器不可用"
	case strings.Contains(reason, "no device"):
		return "总线上所有设备均无应答，疑似线缆断开或总线短路"
	}
	return "无应答"
}

func (ef *edgeFaults) gatewayDevices(gw string) []devices.Index {
	var out []devices.Index
	for i := range ef.ledger.Devices {
		if d := &ef.ledger.Devices[i]; d.Gateway == gw && !d.Removed {
			out = append(out, d.Index)
		}
	}
	return out
}

func (ef *edgeFaults) names(devs []devices.Index) string {
	ids := make([]string, 0, len(devs))
	for i, d := range devs {
		if i == 20 {
			ids = append(ids, fmt.Sprintf("等 %d 台", len(devs)))
			break
		}
		ids = append(ids, ef.ledger.Device(d).ID)
	}
	return strings.Join(ids, "、")
}

// down holds back the offline alarms of the devices of bus key and
// raises its fault, at once or, with deferred, when the first of them
// would have gone offline: a gateway's last will also comes when the
// broker restarts, and a gateway back within its devices' grace has
// hidden nothing. ef.mu is held.
func (ef *edgeFaults) down(events []rules.Event, key, suffix string, devs []devices.Index, note string, t int64, deferred bool) []rules.Event {
	bf := ef.buses[key]
	if bf == nil {
		bf = &busFault{}
		ef.buses[key] = bf
	}
	bf.seen = true
	if bf.active || len(devs) == 0 {
		return events
	}
	anchor := ef.ledger.Device(devs[0])
	bf.active, bf.raised, bf.anchor, bf.devices, bf.since = true, false, devs[0], devs, t
	bf.rule = &rules.Rule{ID: anchor.Kind.String() + suffix, Kind: anchor.Kind, Metric: anchorMetric(anchor.Kind),
		Op: rules.OpEvent, Severity: rules.SeverityFault, NoteZH: note}
	for _, d := range devs {
		if ef.held[d] == nil { // a dead bus keeps its own hold (issue 14)
			ef.held[d] = bf
		}
	}
	ef.log.Warn("gateway bus down: one fault for its devices, their offline alarms held back", "bus", key, "devices", len(devs))
	if deferred {
		return events
	}
	bf.raised = true
	return append(events, rules.Event{Rule: bf.rule, Device: bf.anchor, Transition: rules.Raise, Value: 1, Since: t, Time: t})
}

// up clears the fault of bus key. Its devices' liveness is re-armed from
// now: one still silent a heartbeat period later gets its own offline
// alarm. ef.mu is held; the re-arming happens after it is released.
func (ef *edgeFaults) up(events []rules.Event, key string, t int64) []rules.Event {
	bf := ef.buses[key]
	if bf == nil {
		ef.buses[key] = &busFault{seen: true}
		return events
	}
	if !bf.active {
		return events
	}
	bf.active = false
	for _, d := range bf.devices {
		if ef.held[d] == bf {
			delete(ef.held, d)
			if _, ok := ef.heldSince[d]; ok {
				ef.rearm = append(ef.rearm, d)
			}
		}
	}
	ef.log.Info("gateway bus back up", "bus", key)
	if !bf.raised {
		return events
	}
	bf.raised = false
	return append(events, rules.Event{Rule: bf.rule, Device: bf.anchor, Transition: rules.Clear, Since: t, Time: t})
}

// submit sends events and re-arms liveness, without ef.mu.
func (ef *edgeFaults) submit(events []rules.Event) {
	ef.mu.Lock()
	re := ef.rearm
	ef.rearm = nil
	ef.mu.Unlock()
	for _, ev := range events {
		ef.sink.Submit(ev)
	}
	for _, d := range re {
		if ef.live != nil {
			// Counted as heard now: liveness calls Online, which drops
			// the hold (no offline alarm was raised), and the device's
			// heartbeat deadline runs again from now.
			ef.live.Seen(d, ef.now())
		} else {
			ef.mu.Lock()
			delete(ef.heldSince, d)
			ef.mu.Unlock()
		}
	}
}

func anchorMetric(k devices.Kind) devices.Metric {
	if m, ok := devices.MetricByName(k, "fault"); ok {
		return m
	}
	if m, ok := devices.MetricByName(k, "heartbeat"); ok {
		return m
	}
	m, _ := devices.MetricByName(k, "rssi_dbm")
	return m
}

// Offline holds back the offline alarm of a device whose bus is down.
func (ef *edgeFaults) Offline(d devices.Index, lastSeen, now int64) {
	ef.mu.Lock()
	if bf := ef.heldOrSilent(d, lastSeen, now); bf != nil {
		ef.heldSince[d] = lastSeen
		var ev rules.Event
		if !bf.raised {
			// A gateway's deferred fault: the first of its devices has
			// been silent past its grace.
			bf.raised = true
			ev = rules.Event{Rule: bf.rule, Device: bf.anchor, Transition: rules.Raise, Value: 1, Since: bf.since, Time: now}
		}
		ef.mu.Unlock()
		if ev.Rule != nil {
			ef.sink.Submit(ev)
		}
		return
	}
	ef.mu.Unlock()
	ef.offline.Offline(d, lastSeen, now)
}

// Online clears the offline alarm, unless it was held back (then there is
// none to clear).
func (ef *edgeFaults) Online(d devices.Index, lastSeen, now int64) {
	ef.mu.Lock()
	if _, held := ef.heldSince[d]; held {
		delete(ef.heldSince, d)
		ef.mu.Unlock()
		return
	}
	ef.mu.Unlock()
	ef.offline.Online(d, lastSeen, now)
}

var _ devices.LivenessSink = (*edgeFaults)(nil)

// restoreSensorFaults marks the sensor faults still open in the store, so
// that they clear when the sensor reads again after a restart.
func restoreSensorFaults(ctx context.Context, a Alarms, l *devices.Ledger, ef *edgeFaults) (int, error) {
	n := 0
	err := a.OpenAlarms(ctx, rules.SeverityFault, func(o OpenAlarm) {
		if !strings.HasSuffix(o.Rule, sensorRuleSuffix) {
			return
		}
		d, ok := l.LookupID(o.Device)
		if !ok {
			return
		}
		if metric, ok := devices.MetricByName(d.Kind, o.Metric); ok {
			ef.mu.Lock()
			if k := (sensorKey{d.Index, uint8(o.Channel), metric}); !ef.openSensors[k] {
				ef.openSensors[k] = true
				ef.openDev[d.Index].Add(1)
			}
			ef.mu.Unlock()
			n++
		}
	})
	if err != nil {
		return n, fmt.Errorf("restore sensor faults: %w", err)
	}
	return n, nil
}
