package alarms

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

// Alarm states (docs/alarms.md has the diagram). An alarm is open until it
// reaches one of the closed states; at most one alarm is open per (device,
// rule, channel).
const (
	// StateRaised: the rule fired and the alarm and its push are stored.
	StateRaised State = "raised"
	// StatePushed: the push reached the covering station's webhook (2xx).
	StatePushed State = "pushed"
	// StateReceived: the dispatch platform (联勤联调) confirmed receipt.
	StateReceived State = "received"
	// StateAcknowledged: a person at the station took the alarm on.
	StateAcknowledged State = "acknowledged"
	// StateDispatched: responders were sent (出动).
	StateDispatched State = "dispatched"
	// StateArrived: responders are on the spot (到场).
	StateArrived State = "arrived"
	// StateResolved: handled and closed by a person.
	StateResolved State = "resolved"
	// StateFalseAlarm: closed as a false alarm (误报).
	StateFalseAlarm State = "false_alarm"
	// StateTest: closed as a test or drill.
	StateTest State = "test"
	// StateAutoCleared: the condition ended before anyone acted on the
	// alarm. Never reached by a fire.
	StateAutoCleared State = "auto_cleared"
)

// States lists every state in lifecycle order.
var States = []State{StateRaised, StatePushed, StateReceived, StateAcknowledged, StateDispatched,
	StateArrived, StateResolved, StateFalseAlarm, StateTest, StateAutoCleared}

// next is the transition table: the states each open state may move to.
// Receipt and acknowledgement may overtake the record of the delivery (the
// platform can answer before firewatch has stored the 2xx), so they are
// allowed straight from raised. A person may close an alarm as a false
// alarm or a test at any point; the condition ending closes it only while
// nobody has taken it on.
var next = map[State][]State{
	StateRaised:       {StatePushed, StateReceived, StateAcknowledged, StateFalseAlarm, StateTest, StateAutoCleared},
	StatePushed:       {StateReceived, StateAcknowledged, StateFalseAlarm, StateTest, StateAutoCleared},
	StateReceived:     {StateAcknowledged, StateFalseAlarm, StateTest, StateAutoCleared},
	StateAcknowledged: {StateDispatched, StateResolved, StateFalseAlarm, StateTest},
	StateDispatched:   {StateArrived, StateFalseAlarm, StateTest},
	StateArrived:      {StateResolved, StateFalseAlarm, StateTest},
}

// Valid reports whether s is a known state.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Open reports whether an alarm in state s still waits for something.
func (s State) Open() bool { _, ok := next[s]; return ok }

// ErrIllegalTransition is returned (wrapped) for a transition the lifecycle
// does not allow; ErrConflict when the alarm changed state meanwhile.
var (
	ErrIllegalTransition = errors.New("illegal transition")
	ErrConflict          = errors.New("alarm changed state meanwhile")
)

// CheckTransition returns nil if an alarm of the given severity may move
// from one state to the other, or an error wrapping ErrIllegalTransition
// that says why not.
func CheckTransition(from, to State, severity string) error {
	if !from.Valid() {
		return fmt.Errorf("%w: unknown state %q", ErrIllegalTransition, from)
	}
	if !to.Valid() {
		return fmt.Errorf("%w: unknown state %q", ErrIllegalTransition, to)
	}
	if !from.Open() {
		return fmt.Errorf("%w: %s → %s: the alarm is already closed (%s)", ErrIllegalTransition, from, to, from)
	}
	if to == StateAutoCleared && severity == rules.SeverityFire.String() {
		return fmt.Errorf("%w: %s → %s: a fire is never closed automatically; a person closes it", ErrIllegalTransition, from, to)
	}
	if !slices.Contains(next[from], to) {
		return fmt.Errorf("%w: %s → %s (from %s the alarm can go to %v)", ErrIllegalTransition, from, to, from, next[from])
	}
	return nil
}

// Actors recorded by firewatch itself; people are recorded by the name of
// their API token.
const (
	ActorRules    = "rules"    // the rules engine raised or cleared it
	ActorDispatch = "dispatch" // the outbox delivered the push
	ActorSystem   = "system"   // escalation and other automatic steps
)

// Change is one entry of an alarm's history: a transition, or an event
// that did not change the state (an escalation).
type Change struct {
	From  State     `json:"from,omitempty"`
	To    State     `json:"to"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	Note  string    `json:"note,omitempty"`
}
