package rules

import (
	"fmt"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Severity orders how serious an alarm is: fire (火警) > alarm (报警) >
// warning (预警) > fault (故障) > offline (离线).
type Severity uint8

// Severities, from least to most serious. The zero value is invalid.
const (
	SeverityInvalid Severity = iota
	SeverityOffline
	SeverityFault
	SeverityWarning
	SeverityAlarm
	SeverityFire
)

var severityNames = [...]string{"", "offline", "fault", "warning", "alarm", "fire"}
var severityZH = [...]string{"", "离线", "故障", "预警", "报警", "火警"}

// String returns the severity's name as used in YAML, the API and InfluxDB.
func (s Severity) String() string {
	if int(s) >= len(severityNames) {
		return fmt.Sprintf("severity(%d)", uint8(s))
	}
	return severityNames[s]
}

// ZH returns the Chinese name shown to dispatchers.
func (s Severity) ZH() string {
	if int(s) >= len(severityZH) {
		return ""
	}
	return severityZH[s]
}

// ParseSeverity returns the severity named s.
func ParseSeverity(s string) (Severity, error) {
	for i := SeverityOffline; int(i) < len(severityNames); i++ {
		if severityNames[i] == s {
			return i, nil
		}
	}
	return SeverityInvalid, fmt.Errorf("unknown severity %q (want fire, alarm, warning, fault or offline)", s)
}

// Op is how a rule compares a value with its threshold.
type Op uint8

// Comparison operators.
const (
	OpAbove Op = iota + 1 // fires when value >= threshold
	OpBelow               // fires when value < threshold
	OpEvent               // fires when the event is active (value 1)
	OpRises               // fires when the value rises by threshold within Within
	OpFalls               // fires when the value falls by threshold within Within
)

var opNames = [...]string{"", "above", "below", "event", "rises", "falls"}

func (o Op) String() string {
	if int(o) >= len(opNames) {
		return fmt.Sprintf("op(%d)", uint8(o))
	}
	return opNames[o]
}

// Rule is one compiled rule. Events point to it; it is immutable.
type Rule struct {
	ID       string
	Kind     devices.Kind
	Metric   devices.Metric
	Op       Op
	Severity Severity
	// Threshold is the level at which the rule fires; Clear the level at
	// which it stops (hysteresis). For events both are unused.
	Threshold float64
	Clear     float64
	// For is how long the condition must hold before the rule fires, and
	// ClearFor how long it must be absent before the rule clears.
	For      time.Duration
	ClearFor time.Duration
	// Within is the window of a rises/falls rule: Threshold is the change.
	Within time.Duration
	// When, if set, limits the rule to a time-of-day and day-of-week window
	// in the set's zone.
	When *Window
	// PerDevice rules take their threshold from each device's ledger entry;
	// they are off for devices that set none.
	PerDevice bool
	// Off is set on a variant that a model or device override switched off.
	Off bool
	// Action is an optional linkage action carried on the event, e.g.
	// "cut_power".
	Action string
	// Line is the rule's line in its file, for explanations.
	Line int
	// NoteZH, on rules firewatch makes itself (a gateway's bus fault, a
	// sensor not connected), is the dispatcher text that takes the place
	// of the metric in the alarm message, e.g. the devices of a dead bus.
	NoteZH string
}

// Transition says whether a rule started or stopped firing.
type Transition uint8

// Transitions.
const (
	Raise Transition = iota + 1
	Clear
)

func (t Transition) String() string {
	switch t {
	case Raise:
		return "raise"
	case Clear:
		return "clear"
	}
	return fmt.Sprintf("transition(%d)", uint8(t))
}

// Event is a state change of one rule on one device channel. It carries
// what a duty officer needs to understand why: the rule, its threshold, the
// observed value and since when the condition held.
type Event struct {
	Rule   *Rule
	Device devices.Index
	// Channel is the channel (1…) of a channelled metric, 0 for the others.
	Channel    uint8
	Transition Transition
	// Value is the observed value that completed the transition.
	Value float64
	// Ref is, for a rises/falls rule, the value the change was measured
	// from (at device time Since); zero for other rules.
	Ref float64
	// Since is the device time (Unix ms) when the condition began.
	Since int64
	// Time is the device time (Unix ms) of the reading that caused the
	// transition.
	Time int64
	// Seq is the sequence number of that reading.
	Seq uint32
}
