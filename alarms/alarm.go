package alarms

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

// State is where an alarm is in its lifecycle.
type State string

// Transitions named in pushes and idempotency keys. A push for a person
// closing an alarm is named for the state (resolved, false_alarm, test).
const (
	TransitionRaised = "raised"
	// TransitionCleared is the push of StateAutoCleared (named "cleared"
	// since v1 of the push).
	TransitionCleared = "cleared"
)

// Filter states that select by openness rather than one state.
const (
	FilterOpen   State = "open"
	FilterClosed State = "closed"
)

// Alarm is one alarm as stored, listed by the HTTP API and passed to
// Config.OnTransition. Device times (since, device_time,
// condition_ended_at) come from the device's clock; raised_at, last_seen_at
// and cleared_at from firewatch's. Times are in China Standard Time (UTC+8).
type Alarm struct {
	// ID is "alm-" and a zero-padded number, e.g. "alm-000123". It never
	// repeats, so that idempotency keys derived from it stay unique.
	ID         string `json:"id"`
	State      State  `json:"state"`
	Severity   string `json:"severity"`
	SeverityZH string `json:"severity_zh"`
	Rule       string `json:"rule"`
	Device     string `json:"device"`
	Kind       string `json:"kind"`
	Metric     string `json:"metric"`
	Unit       string `json:"unit"`
	// Channel is the cable channel, charging slot or phase, 0 if none.
	Channel int    `json:"channel"`
	Grid    string `json:"grid"`
	// Station is the station the alarm was routed to: the covering one,
	// or the next ready one up the grid hierarchy (RouteNote says why).
	Station   string `json:"station"`
	RouteNote string `json:"route_note,omitempty"`
	// Incident is the storm incident ("inc-000001") the alarm belongs to:
	// its push went out grouped with the others (docs/alarms.md, storms).
	Incident string `json:"incident,omitempty"`
	// Flapping marks an alarm of a device that keeps raising and clearing
	// the same rule: it stays open until the condition is stable.
	Flapping bool `json:"flapping,omitempty"`
	// Value is the reading that raised the alarm; Threshold the rule's level.
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	// Since is when the condition began, DeviceTime the time of the reading
	// that raised the alarm.
	Since      time.Time `json:"since"`
	DeviceTime time.Time `json:"device_time"`
	RaisedAt   time.Time `json:"raised_at"`
	// LastSeenAt is when the rule last raised this alarm; Repeats counts the
	// raises after the first one while the alarm stayed open.
	LastSeenAt time.Time `json:"last_seen_at"`
	Repeats    int       `json:"repeats"`
	// Escalations counts how often the alarm was escalated for want of a
	// receipt or an acknowledgement.
	Escalations int `json:"escalations"`
	// ConditionEndedAt is set when the rule stopped firing on an alarm that is
	// not closed automatically (a fire): the condition is over, the alarm is
	// still open until a person closes it.
	ConditionEndedAt *time.Time `json:"condition_ended_at,omitempty"`
	ClearedAt        *time.Time `json:"cleared_at,omitempty"`
	// ClearValue is the reading that cleared the alarm.
	ClearValue *float64 `json:"clear_value,omitempty"`
	Action     string   `json:"action,omitempty"`
	// Message is the dispatcher text (zh-CN) of the raised push.
	Message string `json:"message"`
	// Open is false once the alarm reached a closed state.
	Open bool `json:"open"`
	// ClosedAt is when the alarm reached a closed state.
	ClosedAt *time.Time `json:"closed_at,omitempty"`
	// Pushes reports the delivery of the alarm's pushes and History its
	// transitions. Only GET /api/v1/alarms/{id} fills them in.
	Pushes  []PushStatus `json:"pushes,omitempty"`
	History []Change     `json:"history,omitempty"`
	// Commands are the alarm's linkage commands (e.g. cut_power) and their
	// outcome. Only GET /api/v1/alarms/{id} fills them in.
	Commands []CommandStatus `json:"commands,omitempty"`
	// Response is the alarm's response times, computed from its history.
	// Only GET /api/v1/alarms/{id} fills it in.
	Response *Response `json:"response,omitempty"`
}

// PushStatus is the delivery state of one push of an alarm to one receiver.
type PushStatus struct {
	Transition string `json:"transition"`
	// Target is "station" (the covering micro fire station) or "brigade"
	// (消防救援大队).
	Target      string     `json:"target"`
	Attempts    int        `json:"attempts"`
	CreatedAt   time.Time  `json:"created_at"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// ParkedAt is set when the receiver refused the push for good: it is
	// no longer retried (docs/dispatch.md, delivery).
	ParkedAt  *time.Time `json:"parked_at,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// Filter selects alarms for List. The zero Filter selects the newest
// DefaultLimit alarms.
type Filter struct {
	State    State          // "" for any; FilterOpen, FilterClosed or a state
	Severity rules.Severity // SeverityInvalid (0) for any
	// Grid is an administrative code prefix of 2, 4, 6, 9 or 12 digits.
	Grid   string
	Device string // device id, "" for any
	// Since and Until bound RaisedAt: Since <= RaisedAt < Until. Zero means
	// unbounded.
	Since, Until time.Time
	// Limit caps the result; 0 means DefaultLimit, at most MaxLimit.
	Limit int
	// all lifts MaxLimit for statistics.
	all bool
}

// List limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// cst is China Standard Time, the zone of every time firewatch shows to a
// person. A fixed zone: the tz database may be missing on a gateway box.
var cst = time.FixedZone("CST", 8*60*60)

func msTime(ms int64) time.Time { return time.UnixMilli(ms).In(cst) }

// formatID turns the store's row id into the public alarm id.
func formatID(id int64) string { return fmt.Sprintf("alm-%06d", id) }

// parseID accepts "alm-000123" (and, for convenience, "123").
func parseID(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "alm-"), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("alarm id %q: want alm-<number>", s)
	}
	return n, nil
}
