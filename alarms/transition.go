package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/firewatch-iot/firewatch/devices"
)

// stateZH names states for dispatchers.
var stateZH = map[State]string{
	StateRaised:       "已报警",
	StatePushed:       "已推送",
	StateReceived:     "已接收",
	StateAcknowledged: "已确认",
	StateDispatched:   "已出动",
	StateArrived:      "已到场",
	StateResolved:     "已处置",
	StateFalseAlarm:   "误报",
	StateTest:         "测试",
	StateAutoCleared:  "已自动恢复",
}

// MaxNote bounds the note of a transition, in bytes.
const MaxNote = 2000

// Transition moves alarm id to state to on behalf of actor (the name of an
// API token), with an optional note, and returns the alarm as it is now.
// The change, its history entry and, when a person closes the alarm, the
// closing pushes to the receivers of the raised push are committed in one
// transaction. Moving an alarm to the state it is already in is a no-op (a
// retried request); an illegal transition returns an error wrapping
// ErrIllegalTransition, an unknown alarm one wrapping ErrNotFound.
func (m *Manager) Transition(ctx context.Context, id string, to State, actor, note string) (Alarm, error) {
	n, err := parseID(id)
	if err != nil {
		return Alarm{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if actor == "" {
		return Alarm{}, errors.New("transition without an actor")
	}
	if len(note) > MaxNote || !utf8.ValidString(note) {
		return Alarm{}, fmt.Errorf("%w: note must be valid UTF-8 of at most %d bytes", ErrIllegalTransition, MaxNote)
	}
	if to == StatePushed || to == StateAutoCleared || to == StateRaised {
		return Alarm{}, fmt.Errorf("%w: %s is reached by firewatch itself, not by a person", ErrIllegalTransition, to)
	}
	var eff *effect
	for attempt := 0; ; attempt++ {
		eff, err = m.transition(ctx, n, to, actor, note)
		// A conflict means the outbox moved the alarm from raised to pushed
		// between our read and our write: read again.
		if !errors.Is(err, ErrConflict) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return Alarm{}, err
	}
	if eff != nil {
		m.after([]effect{*eff})
	}
	return m.store.get(ctx, n)
}

// receiptAfter lists the states in which a receipt changes nothing: the
// platform confirmed before, or a person has already taken the alarm on.
var receiptAfter = []State{StateReceived, StateAcknowledged, StateDispatched, StateArrived}

func (m *Manager) transition(ctx context.Context, id int64, to State, actor, note string) (*effect, error) {
	tx, err := m.store.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.rollback()
	a, err := tx.alarm(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read alarm %s: %w", formatID(id), err)
	}
	if a.State == to || (to == StateReceived && containsState(receiptAfter, a.State)) {
		return nil, nil
	}
	if err := CheckTransition(a.State, to, a.Severity); err != nil {
		return nil, fmt.Errorf("alarm %s: %w", a.ID, err)
	}
	now := m.now()
	if err := tx.move(ctx, id, a.State, to, now, actor, note); err != nil {
		return nil, err
	}
	a.State, a.Open = to, to.Open()
	var eps []string
	if !to.Open() {
		if eps, err = m.enqueueClosing(ctx, tx, id, &a, actor, note, now); err != nil {
			return nil, err
		}
		t := msTime(now.UnixMilli())
		a.ClosedAt = &t
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	m.log.Info("alarm "+string(to), "alarm", a.ID, "actor", actor, "device", a.Device, "station", a.Station)
	return &effect{alarm: a, transition: string(to), endpoints: eps}, nil
}

func containsState(ss []State, s State) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// enqueueClosing queues a push telling every receiver of the raised push
// that a person closed the alarm, so that the loop closes (闭环) at the
// station and the brigade too.
func (m *Manager) enqueueClosing(ctx context.Context, tx *storeTx, id int64, a *Alarm, actor, note string, now time.Time) ([]string, error) {
	return m.enqueueFromRaised(ctx, tx, id, a, now, func(p *Push) {
		p.Transition = string(a.State)
		p.IdempotencyKey = a.ID + "-" + p.Transition
		p.State, p.Actor, p.Note = string(a.State), actor, note
		p.ClosedAt = formatTime(now)
		p.Message = closingMessage(p, a, actor, note, now)
	})
}

// enqueueFromRaised queues, to every receiver that was told of alarm id
// (closeReceivers), a closing push made from the raised one (or, for an
// alarm only ever listed in an incident, from the alarm) by change, which
// sets at least Transition and IdempotencyKey.
func (m *Manager) enqueueFromRaised(ctx context.Context, tx *storeTx, id int64, a *Alarm, now time.Time, change func(p *Push)) ([]string, error) {
	return m.enqueueClose(ctx, tx, id, a, now, nil, change)
}

// closeReceivers lists, once per endpoint, every station and brigade that
// was told of alarm id: by its raised push, by an escalation, or by an
// incident push that listed it. raised is the body of its raised push to
// the station (or else the brigade), "" if it had none.
func (m *Manager) closeReceivers(ctx context.Context, tx *storeTx, id int64, a *Alarm) (rcv []pushTarget, raised string, err error) {
	incident, listedIn, err := tx.incidentListing(ctx, id)
	if err != nil {
		return nil, "", fmt.Errorf("read alarm %s: %w", a.ID, err)
	}
	inc := int64(-1)
	if incident.Valid && listedIn.Valid {
		inc = incident.Int64
	}
	told, err := tx.toldPushes(ctx, id, inc)
	if err != nil {
		return nil, "", fmt.Errorf("read pushes of alarm %s: %w", a.ID, err)
	}
	seen := map[string]bool{}
	for _, t := range told {
		r := pushTarget{target: t.target, station: t.station, endpoint: t.endpoint}
		if t.transition == TransitionIncident && incidentUpdate(t.key) < listedIn.Int64 {
			continue // an incident push from before the alarm joined
		}
		if t.transition == TransitionRaised && (raised == "" || r.target == "station") {
			raised = t.body
		}
		if seen[r.endpoint] {
			continue
		}
		seen[r.endpoint] = true
		if r.target == "station" && r.station != a.Station {
			// A station asked for help by an escalation: the key is the
			// alarm's own, the target must differ from its station's.
			r.target = "station:" + r.station
		}
		rcv = append(rcv, r)
	}
	return rcv, raised, nil
}

// enqueueClose queues the closing push of alarm id to every receiver that
// was told of it, and to the robots of its grid: base if given, else the
// raised push (or a push made from the alarm), changed by change if not nil.
// An alarm nobody was told of yet (a storm member not yet listed) gets no
// closing push: the incident push lists it with its closed state.
func (m *Manager) enqueueClose(ctx context.Context, tx *storeTx, id int64, a *Alarm, now time.Time, base *Push,
	change func(p *Push)) ([]string, error) {
	rcv, raised, err := m.closeReceivers(ctx, tx, id, a)
	if err != nil {
		return nil, err
	}
	centre, err := m.enqueueCentreClose(ctx, tx, id, a, now) // delivery_centre.go
	if err != nil || len(rcv) == 0 {
		return centre, err
	}
	var p Push
	switch {
	case base != nil:
		p = *base
	case raised != "":
		if err := json.Unmarshal([]byte(raised), &p); err != nil {
			return nil, fmt.Errorf("decode raised push of alarm %s: %w", a.ID, err)
		}
	default:
		p = m.alarmPush(a)
	}
	if change != nil {
		change(&p)
	}
	eps, err := m.queuePush(ctx, tx, id, a.Grid, &p, rcv, now)
	return append(eps, centre...), err
}

// alarmPush makes the fields of a push from a stored alarm, for an alarm
// that had no raised push of its own (a storm member).
func (m *Manager) alarmPush(a *Alarm) Push {
	p := Push{
		Version: PushVersion, IdempotencyKey: a.ID + "-" + TransitionRaised, AlarmID: a.ID, Transition: TransitionRaised,
		Severity: a.Severity, SeverityZH: a.SeverityZH, Rule: a.Rule, Metric: a.Metric, Unit: a.Unit,
		Channel: a.Channel, Value: a.Value, Threshold: a.Threshold, DeviceTime: formatTime(a.DeviceTime),
		RaisedAt: formatTime(a.RaisedAt), Action: a.Action, RouteNote: a.RouteNote, Message: a.Message,
	}
	if d, ok := m.led().LookupID(a.Device); ok {
		p.Device = PushDevice{ID: d.ID, Kind: d.Kind.String(), KindZH: d.Kind.ZH(), Model: d.Model,
			Addr: d.Address, Lat: finite(d.Lat), Lon: finite(d.Lon), Unit: d.Unit, Point: d.Point,
			Contact: d.Contact, Phone: d.Phone}
		p.Grid = PushGrid{Village: d.Grid.Village(), Town: d.Grid.Town(), County: d.Grid.County(), Place: m.led().PlaceName(d.Grid)}
		if mt, ok := devices.MetricByName(d.Kind, a.Metric); ok {
			p.MetricZH = mt.Info().ZH
		}
	} else {
		p.Device = PushDevice{ID: a.Device, Kind: a.Kind}
	}
	if st := m.led().Station(a.Station); st != nil {
		p.Station = PushStation{ID: st.ID, Name: st.Name}
	}
	return p
}

// closingMessage is the dispatcher text of a push for an alarm a person
// closed, e.g.
//
//	【报警·误报】柳州市柳南区潭西街道某村 和平路12号 电气火灾监控探测器 el-450204-0001 报警 alm-000001（报警时间 2026-11-23 18:02:11）已由 张三 于 2026-11-23 18:10:00 标记为“误报”。备注：施工误触。
func closingMessage(p *Push, a *Alarm, actor, note string, at time.Time) string {
	var b strings.Builder
	b.WriteString("【" + p.SeverityZH + "·" + stateZH[a.State] + "】")
	for _, s := range deviceWords(&p.Device, p.Grid.Place) {
		if s != "" {
			b.WriteString(s + " ")
		}
	}
	b.WriteString(p.SeverityZH + " " + a.ID + "（报警时间 " + a.DeviceTime.In(cst).Format(zhTimeLayout) + "）已由 " +
		actor + " 于 " + at.In(cst).Format(zhTimeLayout) + " 标记为“" + stateZH[a.State] + "”。")
	if note != "" {
		b.WriteString("备注：" + note + "。")
	}
	return b.String()
}

// notePushed is called after the first delivery of a raised push moved the
// alarm to pushed.
func (m *Manager) notePushed(alarmID int64) {
	m.log.Debug("alarm pushed", "alarm", formatID(alarmID))
}
