package alarms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Escalation defaults: DOMAIN.md's "1 minute to respond" (1分钟响应).
const (
	DefaultRespondWithin   = time.Minute
	DefaultEscalationCheck = time.Second
	// MaxEscalations bounds how often one alarm is escalated.
	MaxEscalations = 3
)

// TransitionEscalated names escalation pushes; their idempotency key is
// "<alarm_id>-escalated-<n>".
const TransitionEscalated = "escalated"

// unanswered are the states in which nobody has acknowledged an alarm yet.
var unanswered = []State{StateRaised, StatePushed, StateReceived}

// escalateLoop escalates overdue alarms until ctx is done.
func (m *Manager) escalateLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.EscalationCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !m.leading() {
			continue // another instance on the shared store runs them (shared.go)
		}
		if m.onDuty != nil {
			m.onDuty()
		}
		now := m.now()
		if err := m.escalateDue(ctx, now); err != nil && ctx.Err() == nil {
			m.log.Error("escalation check failed", "err", err)
		}
		if err := m.flushIncidents(ctx, now); err != nil && ctx.Err() == nil {
			m.log.Error("incident push failed", "err", err)
		}
		if err := m.clearStable(ctx, now); err != nil && ctx.Err() == nil {
			m.log.Error("clearing stable flapping alarms failed", "err", err)
		}
	}
}

// escalateDue escalates every open fire or alarm that nobody acknowledged
// within RespondWithin of being raised or of its last escalation: one level
// per RespondWithin, also after downtime or a clock step (never a burst).
// Warnings, faults and offline devices are for the duty officer's list and
// the digests: escalating a dead battery up to the brigade would train
// dispatchers to ignore escalations.
func (m *Manager) escalateDue(ctx context.Context, now time.Time) error {
	due, err := m.store.read.overdue(ctx, m.cfg.RespondWithin, MaxEscalations, now)
	if err != nil {
		return fmt.Errorf("find overdue alarms: %w", err)
	}
	return actOnEach(m, due, func(d overdueAlarm) (*effect, error) { return m.escalate(ctx, d.id, d.escalations, now) })
}

// escalate records escalation n+1 of alarm id and queues its push to the
// next station up the grid hierarchy, or to the brigade when there is no
// further station, or again to the station when neither exists.
func (m *Manager) escalate(ctx context.Context, id int64, n int, now time.Time) (*effect, error) {
	tx, err := m.store.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.rollback()
	a, err := tx.alarm(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read alarm %s: %w", formatID(id), err)
	}
	if a.Escalations != n || !slices.Contains(unanswered, a.State) {
		return nil, nil // acknowledged or escalated meanwhile
	}
	body, found, err := tx.raisedPushBody(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read push of alarm %s: %w", a.ID, err)
	}
	if !found {
		return nil, nil // never pushed: nowhere to escalate from
	}
	var p Push
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		return nil, fmt.Errorf("decode push of alarm %s: %w", a.ID, err)
	}

	targetName, stationID, endpoint, label := m.nextLevel(&a, n, &p)
	n++
	// The state again: on PostgreSQL a person may have acknowledged the
	// alarm since the read above (an UPDATE re-reads the row it waited for).
	ok, err := tx.markEscalated(ctx, id, n, now)
	if err != nil {
		return nil, fmt.Errorf("escalate alarm %s: %w", a.ID, err)
	}
	if !ok {
		return nil, nil
	}
	waited := time.Duration(n) * m.cfg.RespondWithin
	note := fmt.Sprintf("%s 内无人确认，第 %d 次升级", waited, n)
	if label != "" {
		note += "，推送" + label
	}
	if err := tx.record(ctx, id, a.State, a.State, now, ActorSystem, note); err != nil {
		return nil, err
	}
	var eps []string
	if endpoint != "" {
		p.Transition = TransitionEscalated
		p.IdempotencyKey = a.ID + "-" + TransitionEscalated + "-" + strconv.Itoa(n)
		p.Escalation = n
		p.Message = "【升级·" + p.SeverityZH + "】报警 " + a.ID + " 已 " + zhDuration(waited) + "无人确认，请立即处置。" + p.Message
		if eps, err = m.queuePush(ctx, tx, id, a.Grid, &p, []pushTarget{{targetName, stationID, endpoint}}, now); err != nil {
			return nil, err
		}
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	m.met.escalations.Inc()
	m.log.Warn("alarm escalated", "alarm", a.ID, "escalation", n, "to", label, "state", a.State, "station", a.Station)
	a.Escalations = n
	return &effect{alarm: a, transition: TransitionEscalated, endpoints: eps}, nil
}

// nextLevel picks the receiver of escalation n+1 of alarm a: the station
// n+1 places after a's station among its candidates (p then names it), or
// else the brigade, or else a's station again. endpoint is "" when there is
// none of them.
func (m *Manager) nextLevel(a *Alarm, n int, p *Push) (target, station, endpoint, label string) {
	if d, ok := m.led().LookupID(a.Device); ok {
		cs := candidates(m.led(), d)
		i := -1
		for j, st := range cs {
			if st.ID == a.Station {
				i = j
			}
		}
		if k := i + 1 + n; i >= 0 && k < len(cs) && cs[k].Endpoint != "" {
			p.Station = PushStation{ID: cs[k].ID, Name: cs[k].Name}
			return "station", cs[k].ID, cs[k].Endpoint, cs[k].Name
		}
	}
	if m.cfg.BrigadeEndpoint != "" {
		return "brigade", "", m.cfg.BrigadeEndpoint, "消防救援大队"
	}
	if st := m.led().Station(a.Station); st != nil && st.Endpoint != "" {
		return "station", st.ID, st.Endpoint, st.Name + "（再次推送）"
	}
	return "", "", "", ""
}

// zhDuration writes a duration for dispatchers: "1 分钟", "90 秒".
func zhDuration(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return strconv.Itoa(int(d/time.Minute)) + " 分钟"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " 秒"
}
