package alarms

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Live registry changes (issue 18). The manager reads the registry
// snapshot in force (led) on every use, so that a new device's alarm
// finds its device, a new station is routable and an edited station's
// endpoint is used from the change on. On each change it also acts
// (AdoptLedger):
//
//   - the pushes still waiting in the outbox for a station whose endpoint
//     changed go to its new endpoint (the outbox rows name the station and
//     the endpoint; the endpoint is rewritten, as at start);
//   - a removed device's open alarms are closed with a note (设备已从台账
//     移除), through the lifecycle, so that every receiver of the raised
//     push gets the closing push — except a fire, and an alarm a person has
//     taken on (acknowledged, dispatched, arrived): a removal in the
//     registry is not proof that nothing burns, so those stay open for a
//     person to close, with the removal noted in their history.

// ActorRegistry is the actor of what a registry change does to alarms.
const ActorRegistry = "registry"

// RemovedNoteZH is the note of an alarm closed because its device was
// removed from the registry.
const RemovedNoteZH = "设备已从台账移除"

// liveLedger is the registry the manager follows, if any (Follow).
type liveLedger = atomic.Pointer[devices.Live]

// led returns the registry snapshot in force: the live registry's newest
// when the manager follows one, else the ledger it was made with.
func (m *Manager) led() *devices.Ledger {
	if lv := m.live.Load(); lv != nil {
		return lv.Load()
	}
	return m.ledger
}

// Follow makes the manager read the registry from lv, whose current
// snapshot must contain the ledger the manager was made with, and act on
// each change applied to it (AdoptLedger) before lv.Apply returns.
// Subscribe the pipeline first: its events for a removed device are then
// all submitted when the manager closes that device's alarms.
func (m *Manager) Follow(lv *devices.Live) {
	m.live.Store(lv)
	lv.Subscribe(func(old, new *devices.Ledger, d *devices.Diff) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.AdoptLedger(ctx, old, new, d); err != nil {
			m.log.Error("registry change: the alarms it concerns not all updated", "err", err)
		}
	})
}

// AdoptLedger acts on the change d that made new from old: pending pushes
// of the stations d names go to their endpoints in new, and the open
// alarms of the devices d removes are closed (see above). Every error is
// returned joined; what succeeded stays done.
func (m *Manager) AdoptLedger(ctx context.Context, old, new *devices.Ledger, d *devices.Diff) error {
	var errs []error
	if len(d.Stations) > 0 {
		if err := m.repointStations(ctx, new, d.Stations); err != nil {
			errs = append(errs, err)
		}
	}
	if len(d.Removed) > 0 {
		// The events the pipeline submitted before it adopted the change
		// are stored first, so that none reopens what is closed here
		// (not before Run: Sync would wait for it).
		if m.running.Load() {
			m.Sync()
		}
		for _, i := range d.Removed {
			id := ""
			switch {
			case int(i) < len(old.Devices):
				id = old.Devices[i].ID
			case int(i) < len(new.Devices):
				id = new.Devices[i].ID
			}
			if id == "" {
				continue
			}
			if err := m.closeRemoved(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// repointStations sends the pending pushes of stations to the endpoints
// l names for them and wakes the outbox workers of those endpoints.
func (m *Manager) repointStations(ctx context.Context, l *devices.Ledger, stations []string) error {
	want := make(map[string]bool, len(stations))
	for _, id := range stations {
		want[id] = true
	}
	moved, err := m.store.repoint(ctx, func(id string) string {
		if !want[id] {
			return ""
		}
		if st := l.Station(id); st != nil {
			return st.Endpoint
		}
		return ""
	}, "")
	if err != nil {
		return err
	}
	if moved > 0 {
		m.log.Info("registry change: pending pushes sent to the stations' new endpoints", "pushes", moved, "stations", len(stations))
	}
	if ob := m.outbox.Load(); ob != nil {
		for _, id := range stations {
			if st := l.Station(id); st != nil && st.Endpoint != "" {
				ob.wake(st.Endpoint)
			}
		}
	}
	return nil
}

// closeRemoved closes the open alarms of device id, removed from the
// registry: auto-cleared with RemovedNoteZH where the lifecycle lets
// firewatch close it, else (a fire, an alarm a person took on) noted in
// its history and left open.
func (m *Manager) closeRemoved(ctx context.Context, id string) error {
	open, err := m.store.list(ctx, Filter{State: FilterOpen, Device: id, Limit: MaxLimit})
	if err != nil {
		return fmt.Errorf("open alarms of removed device %s: %w", id, err)
	}
	var effects []effect
	var errs []error
	for _, a := range open {
		n, err := parseID(a.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if CheckTransition(a.State, StateAutoCleared, a.Severity) != nil {
			if err := m.noteRemoved(ctx, n, a.State); err != nil {
				errs = append(errs, err)
				continue
			}
			m.log.Warn("device removed from the registry with an alarm a person must close: left open", "alarm", a.ID, "device", id, "state", a.State, "severity", a.Severity)
			continue
		}
		var eff *effect
		for attempt := 0; ; attempt++ {
			eff, err = m.transition(ctx, n, StateAutoCleared, ActorRegistry, RemovedNoteZH)
			if !errors.Is(err, ErrConflict) || attempt == 3 {
				break
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("close alarm %s of removed device %s: %w", a.ID, id, err))
			continue
		}
		if eff != nil {
			effects = append(effects, *eff)
			m.log.Info("alarm closed: its device was removed from the registry", "alarm", a.ID, "device", id)
		}
	}
	m.after(effects)
	return errors.Join(errs...)
}

// noteRemoved records in the history of alarm id, left open, that its
// device was removed from the registry — once: in cluster mode every
// instance follows the registry and acts on the same removal (issue 15),
// so the note is not added to an alarm that has it already. The
// alarm's row is locked first (PostgreSQL: another instance noting the
// same removal waits for this commit, then sees it; SQLite's write
// transactions are exclusive anyway).
func (m *Manager) noteRemoved(ctx context.Context, id int64, state State) error {
	tx, err := m.store.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.rollback()
	if err := tx.lock(ctx, id); err != nil {
		return err
	}
	note := RemovedNoteZH + "，此报警需人工关闭"
	if noted, err := tx.noted(ctx, id, ActorRegistry, note); err != nil || noted {
		return err // noted already: by another instance, or at an earlier removal
	}
	if err := tx.record(ctx, id, state, state, m.now(), ActorRegistry, note); err != nil {
		return err
	}
	return tx.commit()
}
