package alarms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Rule events become alarms here: a batch of events is stored in one
// transaction (apply: raise or clear each), retried event by event while
// the store fails (commit), and its effects (metrics, outbox wake-ups,
// OnTransition) applied once it is committed (after).

// effect is what a committed event does outside the store.
type effect struct {
	alarm      Alarm
	transition string // TransitionRaised, TransitionCleared or a closing state
	command    bool   // a linkage command was queued
	endpoints  []string
}

// conflictRetries bounds how often commit reads a batch again at once
// after an alarm of it changed state meanwhile (ErrConflict), before it
// treats the conflict as a failure and backs off.
const conflictRetries = 3

// commit stores batch in one transaction and then applies its effects. A
// failing batch is retried event by event, each with backoff, until giveUp;
// commit returns how many events it had to give up on, each logged in full
// so that an operator can reconstruct it.
func (m *Manager) commit(giveUp context.Context, batch []rules.Event) (lost int) {
	effects, err := m.apply(batch)
	for attempt := 0; errors.Is(err, ErrConflict) && attempt < conflictRetries; attempt++ {
		// Another writer moved an alarm of the batch between this
		// transaction's read and its write (an instance's outbox marking it
		// pushed, a person taking it on): read it again at once. Not a
		// store failure, no backoff.
		effects, err = m.apply(batch)
	}
	if err == nil {
		m.after(effects)
		return 0
	}
	if len(batch) > 1 {
		m.log.Warn("alarm batch failed to commit, retrying event by event", "events", len(batch), "err", err)
		for i := range batch {
			lost += m.commit(giveUp, batch[i:i+1])
		}
		return lost
	}
	for failures := 1; ; failures++ {
		m.storeFailures.Add(1)
		m.logEvent(slog.LevelError, "alarm event failed to commit, retrying", batch[0], "attempt", failures, "err", err)
		t := time.NewTimer(m.storeBackoff(failures))
		select {
		case <-t.C:
		case <-giveUp.Done():
			t.Stop()
			m.logEvent(slog.LevelError, "alarm event LOST: store failing at shutdown", batch[0], "err", err)
			return 1
		}
		if effects, err = m.apply(batch); err == nil {
			m.after(effects)
			return 0
		}
	}
}

func (m *Manager) logEvent(level slog.Level, msg string, ev rules.Event, args ...any) {
	rule := ""
	if ev.Rule != nil {
		rule = ev.Rule.ID
	}
	dev := fmt.Sprintf("index:%d", ev.Device)
	if int(ev.Device) < len(m.led().Devices) {
		dev = m.led().Device(ev.Device).ID
	}
	m.log.Log(context.Background(), level, msg, append([]any{"device", dev, "rule", rule,
		"channel", ev.Channel, "transition", ev.Transition.String(), "value", ev.Value, "time", ev.Time}, args...)...)
}

// after updates metrics, wakes outbox workers and tells OnTransition, once
// the transaction is committed.
func (m *Manager) after(effects []effect) {
	ob := m.outbox.Load()
	for i := range effects {
		e := &effects[i]
		switch e.transition {
		case TransitionRaised:
			m.met.raised.WithLabelValues(e.alarm.Severity).Inc()
		case TransitionCleared:
			m.met.cleared.WithLabelValues(e.alarm.Severity).Inc()
		}
		m.met.pending.Add(float64(len(e.endpoints)))
		if e.command {
			select {
			case m.commandWake <- struct{}{}:
			default:
			}
		}
		for _, ep := range e.endpoints {
			if ob != nil {
				ob.wake(ep)
			}
		}
		if e.transition == TransitionDeliveryFault {
			continue
		}
		m.log.Info("alarm "+e.transition, "alarm", e.alarm.ID, "device", e.alarm.Device, "rule", e.alarm.Rule,
			"severity", e.alarm.Severity, "station", e.alarm.Station, "grid", e.alarm.Grid)
		m.toConsole(e.alarm)
		if e.transition == TransitionIncident {
			// The leader's own transition was told when it happened: an
			// incident push is no new transition of it (no second
			// annotation, no second response record).
			continue
		}
		if m.cfg.OnTransition != nil && e.transition != TransitionEscalated {
			m.cfg.OnTransition(e.alarm)
		}
		if m.cfg.OnClosed != nil && !e.alarm.State.Open() {
			m.closed(e.alarm.ID)
		}
	}
}

// actOnEach acts on each item a periodic check found (an overdue alarm, a
// stable flapping alarm, an incident due), in order, each in its own
// transaction, and applies each effect once it is committed. It stops at
// the first error; the next check starts over.
func actOnEach[T any](m *Manager, items []T, act func(T) (*effect, error)) error {
	for _, it := range items {
		eff, err := act(it)
		if err != nil {
			return err
		}
		if eff != nil {
			m.after([]effect{*eff})
		}
	}
	return nil
}

// apply writes batch in one transaction.
func (m *Manager) apply(batch []rules.Event) ([]effect, error) {
	ctx := context.Background() // a cancelled Run must still be able to drain
	tx, err := m.store.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.rollback()
	now := m.now()
	var effects []effect
	for _, ev := range batch {
		if err := m.check(ev); err != nil {
			m.met.rejected.Inc()
			m.logEvent(slog.LevelError, "alarm event rejected", ev, "err", err)
			continue
		}
		var (
			e   *effect
			err error
		)
		switch ev.Transition {
		case rules.Raise:
			e, err = m.raise(ctx, tx, ev, now)
		case rules.Clear:
			e, err = m.clear(ctx, tx, ev, now)
		}
		if err != nil {
			return nil, err
		}
		if e != nil {
			effects = append(effects, *e)
		}
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	return effects, nil
}

// check rejects events no alarm can be made of: they are programming
// errors upstream, and retrying them would stall the queue.
func (m *Manager) check(ev rules.Event) error {
	switch {
	case ev.Rule == nil:
		return errors.New("event without rule")
	case int(ev.Device) >= len(m.led().Devices):
		return fmt.Errorf("device index %d not in ledger", ev.Device)
	case ev.Transition != rules.Raise && ev.Transition != rules.Clear:
		return fmt.Errorf("unknown transition %d", ev.Transition)
	case int(ev.Rule.Metric) <= 0 || int(ev.Rule.Metric) >= len(devices.Catalog):
		return fmt.Errorf("rule %s: unknown metric %d", ev.Rule.ID, ev.Rule.Metric)
	}
	return nil
}

func (m *Manager) raise(ctx context.Context, tx *storeTx, ev rules.Event, now time.Time) (*effect, error) {
	d, r := m.led().Device(ev.Device), ev.Rule
	id, found, err := tx.openAlarmID(ctx, d.ID, r.ID, ev.Channel)
	if err != nil {
		return nil, fmt.Errorf("find open alarm device %s rule %s: %w", d.ID, r.ID, err)
	}
	if found {
		// Still open (a fire waiting for a person, or a repeated raise):
		// count it, push nothing. is_open again: on PostgreSQL the alarm
		// may have been closed since the SELECT (a flapping alarm found
		// stable), and the live condition needs an open alarm.
		repeated, err := tx.repeatOpen(ctx, id, now)
		if err != nil {
			return nil, fmt.Errorf("repeat alarm %s: %w", formatID(id), err)
		}
		if repeated {
			return nil, nil
		}
	}

	info := r.Metric.Info()
	a := Alarm{
		State: StateRaised, Severity: r.Severity.String(), SeverityZH: r.Severity.ZH(),
		Rule: r.ID, Device: d.ID, Kind: d.Kind.String(), Metric: info.Name, Unit: info.Unit,
		Channel: int(ev.Channel), Grid: string(d.Grid),
		Value: finite(ev.Value), Threshold: finite(r.Threshold),
		Since: msTime(ev.Since), DeviceTime: msTime(ev.Time),
		RaisedAt: msTime(now.UnixMilli()), LastSeenAt: msTime(now.UnixMilli()), Action: r.Action,
	}
	st, note, err := m.route(ctx, tx, d, r.Severity == rules.SeverityFire)
	if err != nil {
		return nil, err
	}
	if st != nil {
		a.Station = st.ID
	}
	a.RouteNote = note
	if a.Flapping, err = m.flapping(ctx, tx, d.ID, r.ID, a.Channel, now); err != nil {
		return nil, err
	}
	in := pushInput{alarm: &a, transition: TransitionRaised, ledger: m.led(), device: d, station: st, rule: r, ev: ev, flapNote: m.flapNote}
	// The message does not depend on the id, so it can be stored with the
	// row; the push body, which does, is written after the insert.
	a.Message = buildPush(in).Message
	if a.Flapping {
		m.log.Warn("device flapping: alarm stays open until stable", "device", d.ID, "rule", r.ID, "channel", a.Channel)
	}
	id, err = tx.insertAlarm(ctx, &a, ev.Since, ev.Time, int64(ev.Seq), now)
	if err != nil {
		return nil, fmt.Errorf("insert alarm device %s rule %s: %w", d.ID, r.ID, err)
	}
	a.ID = formatID(id)
	a.Open = true
	if err := tx.record(ctx, id, "", StateRaised, now, ActorRules, ""); err != nil {
		return nil, err
	}
	if a.Action == "cut_power" {
		if err := tx.insertCommand(ctx, id, &a, now); err != nil {
			return nil, fmt.Errorf("queue %s of alarm %s: %w", a.Action, a.ID, err)
		}
	}
	sms, err := m.enqueueSMS(ctx, tx, id, in, now) // sms.go: also for an alarm that joins an incident
	if err != nil {
		return nil, err
	}
	centre, err := m.enqueueCentre(ctx, tx, id, &a, d, now) // delivery_centre.go
	if err != nil {
		return nil, err
	}
	sms = append(sms, centre...)
	inc, err := m.joinIncident(ctx, tx, a.Station, id, a.Severity)
	if err != nil {
		return nil, err
	}
	if inc != 0 {
		a.Incident = formatIncidentID(inc)
		return &effect{alarm: a, transition: TransitionRaised, endpoints: sms, command: a.Action == "cut_power"}, nil
	}
	eps, err := m.enqueue(ctx, tx, id, in, now)
	if err != nil {
		return nil, err
	}
	return &effect{alarm: a, transition: TransitionRaised, endpoints: append(eps, sms...), command: a.Action == "cut_power"}, nil
}

func (m *Manager) clear(ctx context.Context, tx *storeTx, ev rules.Event, now time.Time) (*effect, error) {
	d, r := m.led().Device(ev.Device), ev.Rule
	a, found, err := tx.openAlarm(ctx, d.ID, r.ID, ev.Channel)
	if err != nil {
		return nil, fmt.Errorf("find open alarm device %s rule %s: %w", d.ID, r.ID, err)
	}
	if !found {
		// Nothing open: e.g. the raise was rejected, or a fire that a person
		// already closed.
		m.logEvent(slog.LevelDebug, "clear without open alarm", ev)
		return nil, nil
	}
	id, _ := parseID(a.ID)
	fire := r.Severity == rules.SeverityFire || a.Severity == rules.SeverityFire.String()
	if fire || a.Flapping || CheckTransition(a.State, StateAutoCleared, a.Severity) != nil {
		// A fire is never closed automatically, and an alarm somebody has
		// taken on is closed by that somebody. A flapping alarm is closed
		// once it has been stable (clearStable).
		if err := tx.endCondition(ctx, id, ev.Time, now); err != nil {
			return nil, fmt.Errorf("end condition of alarm %s: %w", a.ID, err)
		}
		m.log.Info("condition ended, alarm stays open until closed by a person",
			"alarm", a.ID, "device", d.ID, "rule", r.ID, "state", a.State, "station", a.Station)
		return nil, nil
	}
	if err := tx.setCleared(ctx, id, now, finite(ev.Value)); err != nil {
		return nil, fmt.Errorf("clear alarm %s: %w", a.ID, err)
	}
	note := "condition ended at " + formatValue(finite(ev.Value), a.Unit) + " " + a.Unit
	if err := tx.move(ctx, id, a.State, StateAutoCleared, now, ActorRules, note); err != nil {
		return nil, err
	}
	a.State, a.Open = StateAutoCleared, false
	cleared := msTime(now.UnixMilli())
	a.ClearedAt, a.ClosedAt = &cleared, &cleared
	cv := finite(ev.Value)
	a.ClearValue = &cv
	st := m.led().Station(a.Station)
	if st == nil {
		st = d.Station
	}
	in := pushInput{alarm: &a, transition: TransitionCleared, ledger: m.led(), device: d, station: st, rule: r,
		ev: ev, clearedAt: cleared}
	// Tell every receiver that was told of the alarm (its raise, an
	// escalation, an incident push listing it), at the endpoint it was told
	// at, even if the ledger changed since; a storm member not listed yet
	// is told by the incident push, which lists it as cleared.
	p := buildPush(in)
	eps, err := m.enqueueClose(ctx, tx, id, &a, now, &p, nil)
	if err != nil {
		return nil, err
	}
	return &effect{alarm: a, transition: TransitionCleared, endpoints: eps}, nil
}

// enqueue writes the outbox rows of one transition: one for the station,
// and for a fire one for the brigade.
func (m *Manager) enqueue(ctx context.Context, tx *storeTx, alarmID int64, in pushInput, now time.Time) ([]string, error) {
	p := buildPush(in)
	if in.station == nil || in.station.Endpoint == "" {
		m.log.Warn("no station endpoint for alarm: push not queued", "alarm", in.alarm.ID,
			"device", in.device.ID, "rule", in.rule.ID)
	}
	rs := m.stationAndBrigade(in.station, in.alarm.Severity == rules.SeverityFire.String())
	return m.queuePush(ctx, tx, alarmID, string(in.device.Grid), &p, rs, now)
}
