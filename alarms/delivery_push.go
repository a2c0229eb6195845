package alarms

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// PushVersion is the version of the push body.
const PushVersion = "v1"

// Push is the JSON body POSTed to a dispatch webhook for one alarm
// transition. Receivers decode it; unknown keys must be ignored, since new
// keys may be added within v1.
type Push struct {
	Version string `json:"version"`
	// IdempotencyKey is "<alarm_id>-<transition>", the same as the
	// Idempotency-Key header. A receiver that sees a key twice must treat the
	// second request as a duplicate: delivery is at least once.
	IdempotencyKey string `json:"idempotency_key"`
	AlarmID        string `json:"alarm_id"`
	// Transition is "raised" or "cleared".
	Transition string      `json:"transition"`
	Severity   string      `json:"severity"`
	SeverityZH string      `json:"severity_zh"`
	Rule       string      `json:"rule"`
	Device     PushDevice  `json:"device"`
	Grid       PushGrid    `json:"grid"`
	Station    PushStation `json:"station"`
	Metric     string      `json:"metric"`
	MetricZH   string      `json:"metric_zh"`
	// Unit is the metric's unit ("mA", "°C", "MPa", ...) or "event".
	Unit    string `json:"unit"`
	Channel int    `json:"channel"`
	// Op is how Value compares with Threshold: "above", "below", "event",
	// or "rises"/"falls" for a change of Threshold within Within seconds.
	Op string `json:"op"`
	// Value is the reading that caused the transition (1/0 for events).
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	// Ref is, for a rises/falls rule, the value the change was measured
	// from; Within the rule's window in seconds. Both are absent otherwise.
	Ref    *float64 `json:"ref,omitempty"`
	Within float64  `json:"within_s,omitempty"`
	// HeldS is how long the condition held before the transition, in
	// seconds: for "raised" how long the rule's condition held, for
	// "cleared" how long the clearing condition held.
	HeldS float64 `json:"held_s"`
	// DeviceTime is the device time of the reading that caused the
	// transition, RFC 3339 with milliseconds and the +08:00 offset.
	DeviceTime string `json:"device_time"`
	RaisedAt   string `json:"raised_at"`
	ClearedAt  string `json:"cleared_at,omitempty"`
	// Action is the rule's linkage action (e.g. "cut_power"), if any.
	Action string `json:"action,omitempty"`
	// Escalation numbers an escalation push (transition "escalated"): 1
	// for the first.
	Escalation int `json:"escalation,omitempty"`
	// Flapping marks the raised push of an alarm of a flapping device.
	Flapping bool `json:"flapping,omitempty"`
	// RouteNote says which stations routing skipped as not ready, if any.
	RouteNote string `json:"route_note,omitempty"`
	// State, Actor, Note and ClosedAt are set on the push of an alarm a
	// person closed (transition resolved, false_alarm or test): the state
	// it was closed in, the name of the person's API token, their note.
	State    string `json:"state,omitempty"`
	Actor    string `json:"actor,omitempty"`
	Note     string `json:"note,omitempty"`
	ClosedAt string `json:"closed_at,omitempty"`
	// Message is the text for the dispatcher, zh-CN.
	Message string `json:"message"`
}

// PushDevice describes the device of a push.
type PushDevice struct {
	ID     string  `json:"id"`
	Kind   string  `json:"kind"`
	KindZH string  `json:"kind_zh"`
	Model  string  `json:"model"`
	Addr   string  `json:"address"`
	Lat    float64 `json:"lat"`
	Lon    float64 `json:"lon"`
	// Unit is the owning unit (责任单位).
	Unit string `json:"unit"`
	// Contact is the responsible person (责任人) and Phone the phone to
	// call (联系电话), from the ledger; absent when it names none.
	Contact string `json:"contact,omitempty"`
	Phone   string `json:"phone,omitempty"`
	// Point names the building fire facility point of a UITD the device is (devices.Device.Point).
	Point string `json:"point,omitempty"`
}

// PushGrid places the device in the grid hierarchy.
type PushGrid struct {
	Village string `json:"village"`
	Town    string `json:"town"`
	County  string `json:"county"`
	// Place is the names of county, town and village, e.g.
	// "柳州市柳南区潭西街道某村".
	Place string `json:"place"`
}

// PushStation names the covering micro fire station (微型消防站).
type PushStation struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// timeLayout is RFC 3339 with exactly three fractional digits.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// zhTimeLayout is how dispatcher texts show a time (in CST).
const zhTimeLayout = "2006-01-02 15:04:05"

func formatTime(t time.Time) string { return t.In(cst).Format(timeLayout) }

// finite keeps NaN and ±Inf out of JSON, which cannot encode them: a push
// that cannot be encoded would be a lost alarm.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// pushInput is what a push is made from.
type pushInput struct {
	alarm      *Alarm // as stored, with ID
	transition string
	ledger     *devices.Ledger
	device     *devices.Device
	station    *devices.Station // may be nil
	rule       *rules.Rule
	ev         rules.Event // the event that caused the transition
	clearedAt  time.Time   // for "cleared"
	flapNote   func() string
}

func buildPush(in pushInput) Push {
	d, r, a := in.device, in.rule, in.alarm
	info := r.Metric.Info()
	p := Push{
		Version:        PushVersion,
		IdempotencyKey: a.ID + "-" + in.transition,
		AlarmID:        a.ID,
		Transition:     in.transition,
		Severity:       a.Severity,
		SeverityZH:     a.SeverityZH,
		Rule:           r.ID,
		Device: PushDevice{
			ID: d.ID, Kind: d.Kind.String(), KindZH: d.Kind.ZH(), Model: d.Model,
			Addr: d.Address, Lat: finite(d.Lat), Lon: finite(d.Lon), Unit: d.Unit, Point: d.Point,
			Contact: d.Contact, Phone: d.Phone,
		},
		Grid: PushGrid{
			Village: d.Grid.Village(), Town: d.Grid.Town(), County: d.Grid.County(),
			Place: in.ledger.PlaceName(d.Grid),
		},
		Metric:     info.Name,
		MetricZH:   info.ZH,
		Unit:       info.Unit,
		Channel:    int(in.ev.Channel),
		Op:         r.Op.String(),
		Value:      finite(in.ev.Value),
		Threshold:  finite(r.Threshold),
		HeldS:      heldSeconds(in.ev),
		DeviceTime: formatTime(msTime(in.ev.Time)),
		RaisedAt:   formatTime(a.RaisedAt),
		Action:     r.Action,
	}
	if in.station != nil {
		p.Station = PushStation{ID: in.station.ID, Name: in.station.Name}
	}
	p.RouteNote = a.RouteNote
	p.Flapping = a.Flapping && in.transition == TransitionRaised
	if in.transition == TransitionCleared {
		p.ClearedAt = formatTime(in.clearedAt)
	}
	if r.Op == rules.OpRises || r.Op == rules.OpFalls {
		ref := finite(in.ev.Ref)
		p.Ref, p.Within = &ref, r.Within.Seconds()
	}
	p.Message = message(&p, a, r, msTime(in.ev.Time), in.flapNote)
	return p
}

func heldSeconds(ev rules.Event) float64 {
	if ev.Since <= 0 || ev.Time < ev.Since {
		return 0
	}
	return float64(ev.Time-ev.Since) / 1000
}

// actionZH names linkage actions for dispatchers.
var actionZH = map[string]string{
	"cut_power": "切断电源",
}

// message writes the dispatcher text, e.g.
//
//	【报警】柳州市柳南区潭西街道某村 和平路12号 电气火灾监控探测器 el-450204-0001 剩余电流 356.0 mA，超过报警值 300 mA 已持续 12 秒（设备时间 2026-11-23 18:02:11）。责任单位：某厂。就近微型消防站：潭西街道微型消防站。
//
// The heading and the device, then what happened in one of three forms (a
// rule's own words, a device gone offline, a measurement against its
// threshold), then the common ending (finishMessage).
func message(p *Push, a *Alarm, r *rules.Rule, deviceTime time.Time, flapNote func() string) string {
	var b strings.Builder
	writeHeading(&b, p)
	switch {
	case r.NoteZH != "":
		writeNote(&b, p, r)
		writeTime(&b, "设备时间", deviceTime)
	case r.Severity == rules.SeverityOffline:
		writeOffline(&b, p, a)
		writeTime(&b, "发现时间", deviceTime)
	default:
		writeMeasurement(&b, p, r)
		writeTime(&b, "设备时间", deviceTime)
	}
	return finishMessage(&b, p, a, flapNote)
}

// writeHeading writes "【报警】" (or "【报警已恢复】") and where and which
// device.
func writeHeading(b *strings.Builder, p *Push) {
	b.WriteString("【")
	b.WriteString(p.SeverityZH)
	if p.Transition == TransitionCleared {
		b.WriteString("已恢复")
	}
	b.WriteString("】")
	for _, s := range deviceWords(&p.Device, p.Grid.Place) {
		if s != "" {
			b.WriteString(s)
			b.WriteByte(' ')
		}
	}
}

// writeChannel writes "（第2路）" for a channelled metric.
func writeChannel(b *strings.Builder, ch int) {
	if ch > 0 {
		b.WriteString("（第")
		b.WriteString(strconv.Itoa(ch))
		b.WriteString("路）")
	}
}

// writeTime writes "（设备时间 2026-11-23 18:02:11）。".
func writeTime(b *strings.Builder, label string, t time.Time) {
	b.WriteString("（")
	b.WriteString(label)
	b.WriteString(" ")
	b.WriteString(t.In(cst).Format(zhTimeLayout))
	b.WriteString("）。")
}

// writeNote writes what a rule firewatch made itself says happened, in its
// own words (a gateway's dead bus naming its devices, a sensor not
// connected).
func writeNote(b *strings.Builder, p *Push, r *rules.Rule) {
	writeChannel(b, p.Channel)
	b.WriteString(r.NoteZH)
	if p.Transition == TransitionCleared {
		b.WriteString(" 已恢复")
	}
}

// writeOffline writes a liveness alarm: Since is the last report, the
// device time of the event when the silence was noticed
// (cmd/firewatch/liveness_alarms.go).
func writeOffline(b *strings.Builder, p *Push, a *Alarm) {
	if p.Transition == TransitionCleared {
		b.WriteString("已恢复上报")
		return
	}
	b.WriteString("离线：最后一次上报 ")
	b.WriteString(msTime(a.Since.UnixMilli()).Format(zhTimeLayout))
	b.WriteString("，已 ")
	b.WriteString(strconv.FormatFloat(math.Max(1, math.Round(p.HeldS/60)), 'f', 0, 64))
	b.WriteString(" 分钟未上报")
}

// writeMeasurement writes the metric and how its value stands against the
// rule: recovered, changed too fast, or beyond the threshold.
func writeMeasurement(b *strings.Builder, p *Push, r *rules.Rule) {
	b.WriteString(p.MetricZH)
	writeChannel(b, p.Channel)
	event := r.Op == rules.OpEvent || p.Unit == "event"
	switch {
	case p.Transition == TransitionCleared && event:
		b.WriteString(" 已恢复")
	case p.Transition == TransitionCleared:
		b.WriteString(" 已恢复，当前")
		writeValue(b, p.Value, p.Unit)
	case event:
	case p.Ref != nil:
		writeChange(b, p, r)
	default:
		writeBeyond(b, p, r)
	}
}

// writeValue writes " 0.310 MPa", with the precision of its unit.
func writeValue(b *strings.Builder, v float64, unit string) {
	b.WriteString(" ")
	b.WriteString(formatValue(v, unit))
	b.WriteString(" ")
	b.WriteString(unit)
}

// writeChange writes a rises/falls rule's change, e.g.
// "水压 从 0.310 MPa 降至 0.220 MPa（4 秒内），超过预警变化量 0.05 MPa/10 秒".
func writeChange(b *strings.Builder, p *Push, r *rules.Rule) {
	b.WriteString(" 从")
	writeValue(b, *p.Ref, p.Unit)
	if r.Op == rules.OpFalls {
		b.WriteString(" 降至")
	} else {
		b.WriteString(" 升至")
	}
	writeValue(b, p.Value, p.Unit)
	if held := math.Round(p.HeldS); held >= 1 {
		b.WriteString("（")
		b.WriteString(strconv.FormatFloat(held, 'f', 0, 64))
		b.WriteString(" 秒内）")
	}
	b.WriteString("，超过")
	b.WriteString(p.SeverityZH)
	b.WriteString("变化量 ")
	b.WriteString(strconv.FormatFloat(p.Threshold, 'f', -1, 64))
	b.WriteString(" ")
	b.WriteString(p.Unit)
	b.WriteString("/")
	b.WriteString(strconv.FormatFloat(p.Within, 'f', -1, 64))
	b.WriteString(" 秒")
}

// writeBeyond writes a value beyond its threshold, e.g.
// "356.0 mA，超过报警值 300 mA 已持续 12 秒".
func writeBeyond(b *strings.Builder, p *Push, r *rules.Rule) {
	writeValue(b, p.Value, p.Unit)
	if r.Op == rules.OpBelow {
		b.WriteString("，低于")
	} else {
		b.WriteString("，超过")
	}
	b.WriteString(p.SeverityZH)
	b.WriteString("值 ")
	b.WriteString(strconv.FormatFloat(p.Threshold, 'f', -1, 64))
	b.WriteString(" ")
	b.WriteString(p.Unit)
	if held := math.Round(p.HeldS); held >= 1 {
		b.WriteString(" 已持续 ")
		b.WriteString(strconv.FormatFloat(held, 'f', 0, 64))
		b.WriteString(" 秒")
	}
}

// finishMessage appends what every dispatcher text ends with: the original
// alarm of a clear or the linkage of a raise, the owning unit, the
// responsible person, the station and how the push was routed.
func finishMessage(b *strings.Builder, p *Push, a *Alarm, flapNote func() string) string {
	if p.Transition == TransitionCleared {
		b.WriteString("原报警 ")
		b.WriteString(a.ID)
		b.WriteString("，报警时间 ")
		b.WriteString(a.DeviceTime.In(cst).Format(zhTimeLayout))
		b.WriteString("。")
	} else if p.Action != "" {
		b.WriteString("联动：")
		if zh, ok := actionZH[p.Action]; ok {
			b.WriteString(zh)
		} else {
			b.WriteString(p.Action)
		}
		b.WriteString("。")
	}
	if p.Device.Unit != "" {
		b.WriteString("责任单位：")
		b.WriteString(p.Device.Unit)
		b.WriteString("。")
	}
	writeContact(b, &p.Device)
	b.WriteString("就近微型消防站：")
	if p.Station.Name != "" {
		b.WriteString(p.Station.Name)
	} else {
		b.WriteString("未指定")
	}
	b.WriteString("。")
	if p.RouteNote != "" && p.Transition == TransitionRaised {
		b.WriteString(p.RouteNote)
	}
	if a.Flapping && p.Transition == TransitionRaised && flapNote != nil {
		b.WriteString(flapNote())
	}
	return b.String()
}

// writeContact writes "责任人：张三 13800000000。" when the ledger names the
// device's responsible person (issue 18); without one the text is as
// before (the phone alone is in the push's device.phone).
func writeContact(b *strings.Builder, d *PushDevice) {
	if d.Contact == "" {
		return
	}
	b.WriteString("责任人：")
	b.WriteString(d.Contact)
	if d.Phone != "" {
		b.WriteByte(' ')
		b.WriteString(d.Phone)
	}
	b.WriteString("。")
}

// formatValue prints a reading with the precision its unit deserves: water
// pressure in MPa needs three decimals, everything else one.
func formatValue(v float64, unit string) string {
	prec := 1
	if unit == "MPa" {
		prec = 3
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}
