package alarms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// What the lifecycle core queues for delivery: one outbox row of a push
// for each receiver (a station, the brigade) and one markdown message for
// each robot covering the alarm's grid, in the transaction of the change
// that caused them, so that a committed change is never without its
// pushes.

// pushTarget is a station or the brigade that a push goes to. target is
// "station", "brigade", or "station:<id>" for a station an escalation asked
// for help (the key is the alarm's own, so the target must differ).
type pushTarget struct{ target, station, endpoint string }

// stationAndBrigade lists the receivers of a new push: station st if it
// has an endpoint, and for a fire the brigade, unless st's endpoint is the
// brigade's.
func (m *Manager) stationAndBrigade(st *devices.Station, fire bool) []pushTarget {
	var rs []pushTarget
	if st != nil && st.Endpoint != "" {
		rs = append(rs, pushTarget{"station", st.ID, st.Endpoint})
	}
	if ep := m.cfg.BrigadeEndpoint; ep != "" && fire && (len(rs) == 0 || rs[0].endpoint != ep) {
		rs = append(rs, pushTarget{"brigade", "", ep})
	}
	return rs
}

// robotMessage is what the robots covering any of grids are sent for a
// push.
type robotMessage struct {
	grids  []string
	title  string
	text   string
	fields [][2]string
}

// queuePush queues push p of alarm alarmID to each receiver and to the
// robots of grid. It returns the endpoints whose workers to wake.
func (m *Manager) queuePush(ctx context.Context, tx *storeTx, alarmID int64, grid string, p *Push, rs []pushTarget,
	now time.Time) ([]string, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode push %s: %w", p.IdempotencyKey, err)
	}
	return m.queue(ctx, tx, newPush{alarmID: alarmID, transition: p.Transition, key: p.IdempotencyKey, body: body}, rs,
		robotMessage{grids: []string{grid}, title: robotTitle(p.SeverityZH, p.Transition, p.AlarmID), text: p.Message,
			fields: pushFields(p)}, now)
}

// queue writes push (alarm, transition, key, body and, for an incident,
// incident and upto) once for each receiver, and msg for every robot
// covering one of msg.grids. It returns the endpoints whose workers to
// wake.
func (m *Manager) queue(ctx context.Context, tx *storeTx, push newPush, rs []pushTarget, msg robotMessage,
	now time.Time) ([]string, error) {
	eps := make([]string, 0, len(rs))
	for _, r := range rs {
		push.target, push.station, push.endpoint = r.target, r.station, r.endpoint
		if err := tx.insertPush(ctx, push, now); err != nil {
			return nil, fmt.Errorf("queue push %s to %s: %w", push.key, r.target, err)
		}
		eps = append(eps, r.endpoint)
	}
	// Once per robot, whichever of the grids it covers.
	for i, r := range m.cfg.Robots {
		if !slices.ContainsFunc(msg.grids, func(g string) bool { return strings.HasPrefix(g, r.Grid) }) {
			continue
		}
		body, err := robotBody(r.Kind, msg.title, msg.text, msg.fields)
		if err != nil {
			return nil, fmt.Errorf("encode robot message %s: %w", push.key, err)
		}
		if err := tx.insertPush(ctx, newPush{alarmID: push.alarmID, transition: push.transition, target: robotTarget(r, i),
			endpoint: r.URL, key: push.key, body: body}, now); err != nil {
			return nil, fmt.Errorf("queue robot message %s: %w", push.key, err)
		}
		eps = append(eps, r.URL)
	}
	return eps, nil
}
