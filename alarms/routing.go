package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Duty is what a micro fire station reports about its readiness.
type Duty string

// Duty states.
const (
	// DutyOnDuty: on duty (在岗) with People responders ready.
	DutyOnDuty Duty = "on_duty"
	// DutyBusy: out on an incident (出警中).
	DutyBusy Duty = "busy"
	// DutyOffDuty: nobody on duty (离岗).
	DutyOffDuty Duty = "off_duty"
)

var dutyZH = map[Duty]string{DutyOnDuty: "在岗", DutyBusy: "出警中", DutyOffDuty: "离岗"}

// StationStatus is the last duty report of a station.
type StationStatus struct {
	Station string `json:"station"`
	Name    string `json:"name,omitempty"`
	// Duty is on_duty, busy or off_duty; "" when the station never
	// reported, which counts as ready (an alarm must not wait for a report).
	Duty   Duty       `json:"duty,omitempty"`
	People int        `json:"people"`
	Note   string     `json:"note,omitempty"`
	At     *time.Time `json:"at,omitempty"`
	// By is who reported: "mqtt" or the name of an API token.
	By    string `json:"by,omitempty"`
	Ready bool   `json:"ready"`
}

// ready reports whether a station with this status can take an alarm.
func (s StationStatus) ready() bool {
	return s.Duty == "" || (s.Duty == DutyOnDuty && s.People > 0)
}

func (s StationStatus) describe() string {
	if s.Duty == DutyOnDuty {
		return fmt.Sprintf("%s %d 人", dutyZH[s.Duty], s.People)
	}
	return dutyZH[s.Duty]
}

// ErrBadStatus is returned (wrapped) for a malformed duty report.
var ErrBadStatus = errors.New("bad station status")

// statusReport is the MQTT payload of fw/v1/up/station/{id}/status and the
// body of PUT /api/v1/stations/{id}/status.
type statusReport struct {
	Duty   Duty   `json:"duty"`
	People *int   `json:"people"`
	Note   string `json:"note"`
	TS     int64  `json:"ts"` // Unix ms, MQTT only; optional
}

func parseStatus(b []byte) (statusReport, error) {
	var r statusReport
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadStatus, err)
	}
	if _, ok := dutyZH[r.Duty]; !ok {
		return r, fmt.Errorf("%w: duty %q: want on_duty, busy or off_duty", ErrBadStatus, r.Duty)
	}
	if r.People != nil && (*r.People < 0 || *r.People > 1000) {
		return r, fmt.Errorf("%w: people %d out of range", ErrBadStatus, *r.People)
	}
	if r.Duty == DutyOnDuty && r.People == nil {
		return r, fmt.Errorf("%w: on_duty needs people", ErrBadStatus)
	}
	if len(r.Note) > MaxNote {
		return r, fmt.Errorf("%w: note longer than %d bytes", ErrBadStatus, MaxNote)
	}
	return r, nil
}

// SetStationStatus records a duty report for station id (from MQTT,
// by "mqtt", or the API, by a token name). The last report wins.
func (m *Manager) SetStationStatus(ctx context.Context, id string, payload []byte, by string) (StationStatus, error) {
	st := m.led().Station(id)
	if st == nil {
		return StationStatus{}, fmt.Errorf("station %q: %w", id, ErrNotFound)
	}
	r, err := parseStatus(payload)
	if err != nil {
		return StationStatus{}, err
	}
	people := 0
	if r.People != nil {
		people = *r.People
	}
	// The report's own time when it has one (MQTT "ts"), so that a report
	// delivered late (a QoS 1 redelivery, a phone back in coverage) does not
	// overwrite a newer one; a time ahead of our clock is not believed.
	at := m.now().UnixMilli()
	if r.TS > 0 && r.TS < at+int64(time.Minute/time.Millisecond) {
		at = r.TS
	}
	stored, err := m.store.write.putStationStatus(ctx, id, r.Duty, people, r.Note, at, by)
	if err != nil {
		return StationStatus{}, fmt.Errorf("store status of station %s: %w", id, err)
	}
	if !stored {
		m.log.Info("station status older than the one stored: ignored", "station", id, "duty", r.Duty, "ts", r.TS, "by", by)
	} else {
		m.log.Info("station status", "station", id, "duty", r.Duty, "people", people, "by", by)
	}
	return stationStatus(ctx, m.store.write, st)
}

// StationStatuses returns the status of every station in the ledger.
func (m *Manager) StationStatuses(ctx context.Context) ([]StationStatus, error) {
	out := make([]StationStatus, 0, len(m.led().Stations))
	for _, st := range m.led().Stations {
		s, err := stationStatus(ctx, m.store.read, st)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// stationStatus is the status of station st as q reads it.
func stationStatus(ctx context.Context, q queries, st *devices.Station) (StationStatus, error) {
	s := StationStatus{Station: st.ID, Name: st.Name}
	if err := q.stationStatus(ctx, st.ID, &s); err != nil {
		return s, err
	}
	s.Ready = s.ready()
	return s, nil
}

// candidates lists the stations that may take an alarm of device d, best
// first: the station the ledger names for the device, then every station
// covering the device's grid, longest prefix first (village, town, county).
func candidates(l *devices.Ledger, d *devices.Device) []*devices.Station {
	type cand struct {
		st  *devices.Station
		len int
	}
	var cs []cand
	for _, st := range l.Stations {
		best := 0
		for _, g := range st.Grids {
			if d.Grid.Within(g) && len(g) > best {
				best = len(g)
			}
		}
		if best > 0 {
			cs = append(cs, cand{st, best})
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return b.len - a.len })
	out := make([]*devices.Station, 0, len(cs)+1)
	if d.Station != nil {
		out = append(out, d.Station)
	}
	for _, c := range cs {
		if c.st != d.Station {
			out = append(out, c.st)
		}
	}
	return out
}

// route picks the station for a new alarm of device d: the first candidate
// that is ready. It returns a note (zh-CN, for the alarm and the push) when
// it skipped a station; when none is ready the alarm still goes to the
// first candidate (an alarm is never held back), and the note says so.
//
// For a fire, a station whose endpoint keeps failing (endpointFailing) is
// not ready either: the fire goes to the next station up at once instead of
// waiting in that station's queue (the brigade gets it in any case).
func (m *Manager) route(ctx context.Context, tx *storeTx, d *devices.Device, fire bool) (*devices.Station, string, error) {
	cs := candidates(m.led(), d)
	if len(cs) == 0 {
		return d.Station, "", nil
	}
	var skipped []string
	for _, st := range cs {
		s, err := stationStatus(ctx, tx.queries, st)
		if err != nil {
			return nil, "", err
		}
		if fire && s.Ready && st.Endpoint != "" {
			failing, err := m.endpointFailing(ctx, tx, st.Endpoint)
			if err != nil {
				return nil, "", err
			}
			if failing {
				skipped = append(skipped, st.Name+"（推送地址持续失败）")
				continue
			}
		}
		if s.Ready && st.Endpoint != "" {
			if len(skipped) == 0 {
				return st, "", nil
			}
			return st, strings.Join(skipped, "，") + "，改派" + st.Name + "。", nil
		}
		why := s.describe()
		if st.Endpoint == "" {
			why = "无推送地址"
		}
		skipped = append(skipped, st.Name+"（"+why+"）")
	}
	return cs[0], strings.Join(skipped, "，") + "，均未就绪，仍推送" + cs[0].Name + "。", nil
}

// Failing endpoints: the oldest push waiting for an endpoint has failed at
// least failingAttempts times over at least failingFor.
const (
	failingAttempts = 3
	failingFor      = 30 * time.Second
)

// endpointFailing reports whether endpoint keeps failing: its oldest
// pending push was tried failingAttempts times and is older than
// failingFor.
func (m *Manager) endpointFailing(ctx context.Context, tx *storeTx, endpoint string) (bool, error) {
	attempts, created, found, err := tx.oldestPending(ctx, endpoint)
	if err != nil {
		return false, fmt.Errorf("read outbox of %s: %w", redact(endpoint), err)
	}
	if !found {
		return false, nil
	}
	return attempts >= failingAttempts && m.now().UnixMilli()-created >= failingFor.Milliseconds(), nil
}
