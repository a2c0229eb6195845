package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Storm defaults (docs/alarms.md, storms).
const (
	// DefaultStormWindow: a new alarm for a station within this of the
	// station's previous one starts or joins an incident.
	DefaultStormWindow = 10 * time.Second
	// DefaultStormHold: an incident's push waits until no alarm joined for
	// this long (the storm is over), but at most StormWindow after the
	// incident opened or was last pushed.
	DefaultStormHold = 2 * time.Second
	// maxListed bounds the devices named in an incident's message.
	maxListed = 20
)

// TransitionIncident names incident pushes; their idempotency key is
// "<incident_id>-<n>", n counting the incident's pushes from 1.
const TransitionIncident = "incident"

// IncidentPush is the body of a push that groups the alarms of a storm: many
// alarms for one station within StormWindow (a whole village of smoke
// detectors at once). The station gets the first alarm on its own, at once,
// and then one incident push for the rest, updated when more join.
type IncidentPush struct {
	Version        string `json:"version"`
	IdempotencyKey string `json:"idempotency_key"`
	// IncidentID is "inc-" and a number, e.g. "inc-000001".
	IncidentID string `json:"incident_id"`
	Transition string `json:"transition"` // "incident"
	// Update counts the incident's pushes: 1 for the first.
	Update int `json:"update"`
	// Severity is the highest severity among the alarms.
	Severity   string      `json:"severity"`
	SeverityZH string      `json:"severity_zh"`
	Station    PushStation `json:"station"`
	// Grid is the place the alarms share: their village, or else their
	// town or county (fields for finer levels are then empty).
	Grid PushGrid `json:"grid"`
	// Count is the number of alarms; BySeverity counts them per severity.
	Count      int            `json:"count"`
	BySeverity map[string]int `json:"by_severity"`
	// FirstAlarm is the alarm pushed on its own before the storm was seen.
	FirstAlarm    string `json:"first_alarm"`
	FirstRaisedAt string `json:"first_raised_at"`
	LastRaisedAt  string `json:"last_raised_at"`
	// Alarms lists the first MaxIncidentAlarms alarms; Omitted counts the
	// alarms counted but not listed (a receiver must not be sent a body
	// that grows with the storm).
	Alarms  []IncidentAlarm `json:"alarms"`
	Omitted int             `json:"omitted,omitempty"`
	Message string          `json:"message"`
}

// MaxIncidentAlarms bounds the alarms listed in an incident push (about
// 250 bytes each).
const MaxIncidentAlarms = 50

// IncidentAlarm is one alarm of an incident.
type IncidentAlarm struct {
	AlarmID  string  `json:"alarm_id"`
	Device   string  `json:"device"`
	Kind     string  `json:"kind"`
	Address  string  `json:"address"`
	Village  string  `json:"village"`
	Rule     string  `json:"rule"`
	Metric   string  `json:"metric"`
	Severity string  `json:"severity"`
	Value    float64 `json:"value"`
	RaisedAt string  `json:"raised_at"`
	// State is the alarm's state when the push was made: a member already
	// closed (auto_cleared, …) gets no closing push of its own unless it was
	// listed open before.
	State string `json:"state"`
}

// errLeaderTaken: another instance made the would-be leader of a new
// incident the leader of its own; the event is retried and then joins that
// incident.
var errLeaderTaken = errors.New("leads another incident")

func formatIncidentID(id int64) string { return fmt.Sprintf("inc-%06d", id) }

// joinIncident decides, inside the transaction that inserts alarm id of
// the given severity for station st, whether the alarm is part of a storm.
// It returns the incident the alarm joined, or 0 when the alarm is pushed on
// its own. An alarm more severe than every alarm the station got within the
// window is news (the fire after the electrical alarm) and always goes on
// its own.
func (m *Manager) joinIncident(ctx context.Context, tx *storeTx, st string, id int64, severity string) (int64, error) {
	if m.cfg.StormWindow < 0 || st == "" {
		return 0, nil
	}
	// Not the batch's time, which may be long past when a large batch
	// commits: the hold counts from the latest member really stored.
	now := m.now()
	since := now.Add(-m.cfg.StormWindow)
	sev, err := rules.ParseSeverity(severity)
	if err != nil {
		return 0, nil
	}
	recent, err := tx.recentSeverities(ctx, st, since, id)
	if err != nil {
		return 0, fmt.Errorf("look for a storm at station %s: %w", st, err)
	}
	top := rules.SeverityInvalid
	for _, s := range recent {
		if v, err := rules.ParseSeverity(s); err == nil && v > top {
			top = v
		}
	}
	if top == rules.SeverityInvalid || sev > top || sev == rules.SeverityFire {
		// A fire is never only a line in an incident: it gets its own push,
		// its own escalation clock and its own closing push, at once.
		return 0, nil
	}
	inc, found, err := tx.findOpenIncident(ctx, st, since)
	switch {
	case err != nil:
		return 0, fmt.Errorf("find incident of station %s: %w", st, err)
	case found:
		// is_open again: on PostgreSQL flushIncidents may have closed the
		// incident since the SELECT; a member of a closed incident would
		// never be pushed.
		ok, err := tx.addMember(ctx, inc, now)
		if err != nil {
			return 0, fmt.Errorf("join incident %s: %w", formatIncidentID(inc), err)
		}
		if !ok {
			return 0, nil // closed meanwhile: pushed on its own
		}
	default:
		if inc, err = m.openIncident(ctx, tx, st, since, id, now); inc == 0 || err != nil {
			return 0, err
		}
	}
	if err := tx.setIncident(ctx, id, inc); err != nil {
		return 0, fmt.Errorf("join incident %s: %w", formatIncidentID(inc), err)
	}
	if err := tx.record(ctx, id, StateRaised, StateRaised, now, ActorSystem,
		"storm: grouped into incident "+formatIncidentID(inc)+", pushed with it"); err != nil {
		return 0, err
	}
	return inc, nil
}

// openIncident opens an incident at station st for alarm id, led by the
// station's previous alarm since since, if there is one; it returns 0 when
// there is none (not a storm).
func (m *Manager) openIncident(ctx context.Context, tx *storeTx, st string, since time.Time, id int64, now time.Time) (int64, error) {
	prev, prevState, found, err := tx.stormLeader(ctx, st, since, id)
	if err != nil {
		return 0, fmt.Errorf("look for a storm at station %s: %w", st, err)
	}
	if !found {
		return 0, nil // not a storm
	}
	inc, err := tx.insertIncident(ctx, st, prev, now)
	if err != nil {
		return 0, fmt.Errorf("open incident at station %s: %w", st, err)
	}
	// incident_id IS NULL again: another instance on the same
	// PostgreSQL may have made prev the leader of its own incident.
	ok, err := tx.makeLeader(ctx, inc, prev)
	if err != nil {
		return 0, fmt.Errorf("open incident %s: %w", formatIncidentID(inc), err)
	}
	if !ok {
		return 0, fmt.Errorf("open incident at station %s: alarm %s %w", st, formatID(prev), errLeaderTaken)
	}
	if err := tx.record(ctx, prev, prevState, prevState, now, ActorSystem,
		"storm: first alarm of incident "+formatIncidentID(inc)); err != nil {
		return 0, err
	}
	m.log.Warn("alarm storm: incident opened", "incident", formatIncidentID(inc), "station", st, "first_alarm", formatID(prev))
	return inc, nil
}

// flushIncidents queues the push of every incident that has members not yet
// pushed and whose hold has passed, and closes quiet incidents.
func (m *Manager) flushIncidents(ctx context.Context, now time.Time) error {
	hold, most := m.cfg.StormHold, m.cfg.StormWindow
	if m.done.Load() < m.submitted.Load() {
		// Events are still queued or being stored: the storm is not over,
		// whatever the last stored member says. Only the bound applies.
		hold = most
	}
	ids, err := m.store.read.incidentsDue(ctx, hold, most, now)
	if err != nil {
		return fmt.Errorf("find incidents to push: %w", err)
	}
	if err := actOnEach(m, ids, func(id int64) (*effect, error) { return m.pushIncident(ctx, id, now) }); err != nil {
		return err
	}
	if err := m.store.write.closeQuietIncidents(ctx, now.Add(-m.cfg.StormWindow)); err != nil {
		return fmt.Errorf("close quiet incidents: %w", err)
	}
	return nil
}

// pushIncident queues one push of incident id with every alarm it has now.
func (m *Manager) pushIncident(ctx context.Context, id int64, now time.Time) (*effect, error) {
	tx, err := m.store.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.rollback()
	stationID, leader, pushes, err := tx.incident(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read incident %s: %w", formatIncidentID(id), err)
	}
	// Claim push number pushes+1 first: another instance flushing the same
	// incident then finds the number taken and leaves it.
	ok, err := tx.claimIncidentPush(ctx, id, pushes)
	if err != nil {
		return nil, fmt.Errorf("record push of incident %s: %w", formatIncidentID(id), err)
	}
	if !ok {
		return nil, nil
	}
	pushes++
	// The members this push counts, marked before they are read: on
	// PostgreSQL an alarm with a lower id may commit after a higher one, and
	// the delivery of this push must move exactly the alarms it counts to
	// pushed (store.markDelivered).
	if err := tx.listMembers(ctx, id, pushes); err != nil {
		return nil, fmt.Errorf("record push of incident %s: %w", formatIncidentID(id), err)
	}
	members, err := tx.listedMembers(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read alarms of incident %s: %w", formatIncidentID(id), err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	p := m.buildIncident(id, int(pushes), stationID, formatID(leader), members)
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode push %s: %w", p.IdempotencyKey, err)
	}
	rs := m.stationAndBrigade(m.led().Station(stationID), p.BySeverity[rules.SeverityFire.String()] > 0)
	upto, _ := parseID(members[len(members)-1].ID)
	// The robots of every member's grid, not only the leader's: a village
	// robot hears of its village's alarms whichever village led.
	grids := make([]string, 0, 1)
	for _, a := range members {
		if !slices.Contains(grids, a.Grid) {
			grids = append(grids, a.Grid)
		}
	}
	eps, err := m.queue(ctx, tx, newPush{alarmID: leader, transition: TransitionIncident, key: p.IdempotencyKey, body: body,
		incident: id, upto: upto}, rs, robotMessage{grids: grids, title: robotTitle(p.SeverityZH, TransitionIncident, p.IncidentID),
		text: p.Message, fields: [][2]string{{"事件编号", p.IncidentID}, {"报警数", strconv.Itoa(p.Count)}, {"地点", p.Grid.Place},
			{"微型消防站", p.Station.Name}}}, now)
	if err != nil {
		return nil, err
	}
	if err := tx.incidentPushed(ctx, id, len(members), now); err != nil {
		return nil, fmt.Errorf("record push of incident %s: %w", formatIncidentID(id), err)
	}

	if err := tx.commit(); err != nil {
		return nil, err
	}
	m.log.Warn("alarm storm: incident pushed", "incident", p.IncidentID, "station", stationID, "alarms", len(members), "update", pushes)
	leaderAlarm := members[0]
	return &effect{alarm: leaderAlarm, transition: TransitionIncident, endpoints: eps}, nil
}

func (m *Manager) buildIncident(id int64, update int, stationID, first string, members []Alarm) IncidentPush {
	p := IncidentPush{
		Version: PushVersion, IncidentID: formatIncidentID(id), Transition: TransitionIncident, Update: update,
		Count: len(members), BySeverity: map[string]int{}, FirstAlarm: first,
		FirstRaisedAt: formatTime(members[0].RaisedAt), LastRaisedAt: formatTime(members[len(members)-1].RaisedAt),
	}
	p.IdempotencyKey = p.IncidentID + "-" + strconv.Itoa(update)
	if st := m.led().Station(stationID); st != nil {
		p.Station = PushStation{ID: st.ID, Name: st.Name}
	}
	top := rules.SeverityInvalid
	common := members[0].Grid
	for _, a := range members {
		p.BySeverity[a.Severity]++
		if s, err := rules.ParseSeverity(a.Severity); err == nil && s > top {
			top = s
		}
		for !strings.HasPrefix(a.Grid, common) {
			common = common[:len(common)-1]
		}
		if len(p.Alarms) == MaxIncidentAlarms {
			p.Omitted++
			continue
		}
		ia := IncidentAlarm{AlarmID: a.ID, Device: a.Device, Kind: a.Kind, Village: a.Grid, Rule: a.Rule,
			Metric: a.Metric, Severity: a.Severity, Value: a.Value, RaisedAt: formatTime(a.RaisedAt), State: string(a.State)}
		if d, ok := m.led().LookupID(a.Device); ok {
			ia.Address = d.Address
		}
		p.Alarms = append(p.Alarms, ia)
	}
	p.Severity, p.SeverityZH = top.String(), top.ZH()
	// The shared place, at the finest level all alarms have in common.
	g := devices.Grid(members[0].Grid)
	switch {
	case len(common) >= 12:
		p.Grid = PushGrid{Village: g.Village(), Town: g.Town(), County: g.County(), Place: m.led().PlaceName(g)}
	case len(common) >= 9:
		p.Grid = PushGrid{Town: g.Town(), County: g.County(), Place: m.led().Places[g.County()] + m.led().Places[g.Town()]}
	case len(common) >= 6:
		p.Grid = PushGrid{County: g.County(), Place: m.led().Places[g.County()]}
	}
	p.Message = incidentMessage(&p, members)
	return p
}

// incidentMessage writes the dispatcher text of an incident, e.g.
//
//	【火警·群发事件】柳州市柳南区潭西街道鹅山村 2 秒内 500 起报警（火警 500）：sm-c-000 鹅山路1号、…等 500 台设备。事件 inc-000001，首条报警 alm-000001 已单独推送。就近微型消防站：潭西街道微型消防站。
func incidentMessage(p *IncidentPush, members []Alarm) string {
	var b strings.Builder
	b.WriteString("【" + p.SeverityZH + "·群发事件】")
	if p.Update > 1 {
		b.WriteString("（第 " + strconv.Itoa(p.Update) + " 次更新）")
	}
	b.WriteString(p.Grid.Place + " ")
	span := members[len(members)-1].RaisedAt.Sub(members[0].RaisedAt)
	b.WriteString(strconv.Itoa(max(1, int(span.Round(time.Second)/time.Second))) + " 秒内 " + strconv.Itoa(p.Count) + " 起报警（")
	first := true
	for s := rules.SeverityFire; s >= rules.SeverityOffline; s-- {
		if n := p.BySeverity[s.String()]; n > 0 {
			if !first {
				b.WriteString("，")
			}
			first = false
			b.WriteString(s.ZH() + " " + strconv.Itoa(n))
		}
	}
	b.WriteString("）：")
	seen := map[string]bool{}
	listed := 0
	for _, a := range p.Alarms {
		if seen[a.Device] {
			continue
		}
		seen[a.Device] = true
		if listed == maxListed {
			b.WriteString("…")
			break
		}
		if listed > 0 {
			b.WriteString("、")
		}
		b.WriteString(strings.TrimSpace(a.Device + " " + a.Address))
		listed++
	}
	b.WriteString("等 " + strconv.Itoa(uniqueDevices(members)) + " 台设备。事件 " + p.IncidentID + "，首条报警 " + p.FirstAlarm + " 已单独推送。")
	b.WriteString("就近微型消防站：")
	if p.Station.Name != "" {
		b.WriteString(p.Station.Name)
	} else {
		b.WriteString("未指定")
	}
	b.WriteString("。")
	return b.String()
}

func uniqueDevices(as []Alarm) int {
	out := map[string]bool{}
	for _, a := range as {
		out[a.Device] = true
	}
	return len(out)
}
