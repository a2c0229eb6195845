package rules

import (
	_ "embed"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/yamlfile"
	"gopkg.in/yaml.v3"
)

//go:embed defaults.yaml
var defaultsYAML []byte

// Defaults returns the default rule set shipped in rules/defaults.yaml,
// taken from DOMAIN.md.
func Defaults() (*Set, error) { return Parse("rules/defaults.yaml", defaultsYAML) }

// DefaultsYAML returns the text of the default rule file.
func DefaultsYAML() []byte { return defaultsYAML }

// Set is a validated rule set, ready to compile into an Engine.
type Set struct {
	Rules []*Rule
	// Zone is the sites' time zone for time windows: a fixed offset, since
	// China has no daylight saving time.
	Zone *time.Location
	// Models holds per-model overrides: model → rule id → override.
	Models map[string]map[string]Override
	// File is the name the set was parsed from, for messages.
	File string
}

// Actions are the linkage actions a rule may carry.
var Actions = map[string]bool{"cut_power": true}

// PerDevice is the threshold value of a rule whose threshold each device
// sets in the ledger (a rated current, a slot rating).
const PerDevice = "per_device"

type ruleEntry struct {
	ID       string     `yaml:"id"`
	Kind     string     `yaml:"kind"`
	Metric   string     `yaml:"metric"`
	Event    string     `yaml:"event"`
	Above    yaml.Node  `yaml:"above"` // a number or per_device; Kind 0 when absent
	Below    yaml.Node  `yaml:"below"`
	Clear    *float64   `yaml:"clear"`
	Rises    *float64   `yaml:"rises"`
	Falls    *float64   `yaml:"falls"`
	Within   string     `yaml:"within"`
	For      string     `yaml:"for"`
	ClearFor string     `yaml:"clear_for"`
	When     *whenEntry `yaml:"when"`
	Severity string     `yaml:"severity"`
	Action   string     `yaml:"action"`
}

type whenEntry struct {
	Time string   `yaml:"time"`
	Days []string `yaml:"days"`
}

// Load reads and validates a rule file.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return Parse(path, b)
}

// Parse validates a rule file's text; name is used in messages. Every
// mistake is reported with its line, as a *devices.LoadError.
func Parse(name string, b []byte) (*Set, error) {
	var doc struct {
		Timezone string                          `yaml:"timezone"`
		Models   map[string]map[string]yaml.Node `yaml:"models"`
		Rules    []yaml.Node                     `yaml:"rules"`
	}
	if err := yamlfile.Decode(b, &doc); err != nil {
		return nil, &devices.LoadError{Problems: []devices.Problem{{File: name, Line: yamlfile.Line(err), Reason: yamlfile.Reason(err)}}}
	}
	var probs []devices.Problem
	bad := func(line int, format string, args ...any) {
		probs = append(probs, devices.Problem{File: name, Line: line, Reason: fmt.Sprintf(format, args...)})
	}
	set := &Set{File: name, Models: map[string]map[string]Override{}}
	var err error
	if set.Zone, err = ParseZone(doc.Timezone); err != nil {
		bad(1, "timezone: %v", err)
	}
	seen := map[string]int{}
	for i := range doc.Rules {
		n := &doc.Rules[i]
		var e ruleEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			bad(n.Line, "rule: %v", err)
			continue
		}
		r, reasons := e.compile()
		for _, reason := range reasons {
			bad(n.Line, "rule %q: %s", e.ID, reason)
		}
		if e.ID != "" {
			if first, dup := seen[e.ID]; dup {
				bad(n.Line, "rule %q: duplicate id (first at line %d)", e.ID, first)
			}
			seen[e.ID] = n.Line
		}
		if len(reasons) == 0 {
			r.Line = n.Line
			set.Rules = append(set.Rules, r)
		}
	}
	byID := map[string]*Rule{}
	for _, r := range set.Rules {
		byID[r.ID] = r
	}
	for model, overrides := range doc.Models {
		set.Models[model] = map[string]Override{}
		for id, n := range overrides {
			o, err := ParseOverride(&n)
			if err == nil {
				err = o.Check(byID[id], id)
			}
			if err != nil {
				bad(n.Line, "models: %s: %v", model, err)
				continue
			}
			set.Models[model][id] = o
		}
	}
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b devices.Problem) int { return a.Line - b.Line })
		return nil, &devices.LoadError{Problems: probs}
	}
	return set, nil
}

// ParseZone accepts "", "Asia/Shanghai" and other fixed-offset IANA names,
// and "UTC+8" / "+08:00" forms. The empty zone is China Standard Time.
func ParseZone(s string) (*time.Location, error) {
	switch s {
	case "", "Asia/Shanghai", "Asia/Chongqing", "Asia/Harbin", "Asia/Urumqi", "PRC", "CST":
		if s == "Asia/Urumqi" {
			return time.FixedZone("UTC+6", 6*3600), nil
		}
		return time.FixedZone("CST", 8*3600), nil
	}
	var h, m int
	var sign byte
	if n, _ := fmt.Sscanf(strings.TrimPrefix(s, "UTC"), "%c%d:%d", &sign, &h, &m); n >= 2 && (sign == '+' || sign == '-') && h <= 14 && m < 60 {
		off := h*3600 + m*60
		if sign == '-' {
			off = -off
		}
		return time.FixedZone(s, off), nil
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a zone name nor an offset such as +08:00", s)
	}
	y := time.Now().Year()
	_, jan := time.Date(y, 1, 1, 0, 0, 0, 0, loc).Zone()
	_, jul := time.Date(y, 7, 1, 0, 0, 0, 0, loc).Zone()
	if jan != jul {
		return nil, fmt.Errorf("%q has daylight saving time; time windows need a fixed offset such as +08:00", s)
	}
	return time.FixedZone(s, jan), nil
}

// threshold reads an above/below value: a number or per_device.
func threshold(n *yaml.Node) (v float64, perDevice bool, err error) {
	if n.Kind == yaml.ScalarNode && n.Value == PerDevice {
		return 0, true, nil
	}
	if err := n.Decode(&v); err != nil {
		return 0, false, fmt.Errorf("%q is neither a number nor %s", n.Value, PerDevice)
	}
	return v, false, nil
}

func duration(field, s string, why *[]string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		*why = append(*why, fmt.Sprintf("%s: %v", field, err))
	case d < 0:
		*why = append(*why, field+" is negative")
	case d%time.Millisecond != 0:
		*why = append(*why, field+" is finer than a millisecond")
	}
	return d
}

// compile checks one entry and returns the rule, or the reasons it is wrong.
func (e *ruleEntry) compile() (*Rule, []string) {
	var why []string
	r := &Rule{ID: e.ID, Action: e.Action}
	if e.ID == "" {
		why = append(why, "id is missing")
	}
	kind, err := devices.ParseKind(e.Kind)
	if err != nil {
		why = append(why, err.Error())
	}
	r.Kind = kind
	if r.Severity, err = ParseSeverity(e.Severity); err != nil {
		why = append(why, err.Error())
	} else if r.Severity == SeverityOffline {
		why = append(why, "offline is raised by device liveness, not by a rule")
	}
	if e.Action != "" && !Actions[e.Action] {
		why = append(why, fmt.Sprintf("unknown action %q (known: cut_power)", e.Action))
	}
	r.For = duration("for", e.For, &why)
	r.ClearFor = duration("clear_for", e.ClearFor, &why)
	r.Within = duration("within", e.Within, &why)
	if e.When != nil {
		w, err := parseWindow(e.When.Time, e.When.Days)
		if err != nil {
			why = append(why, "when: "+err.Error())
		}
		r.When = w
	}
	ways := 0
	for _, set := range []bool{e.Above.Kind != 0, e.Below.Kind != 0, e.Event != "", e.Rises != nil, e.Falls != nil} {
		if set {
			ways++
		}
	}
	if ways != 1 {
		return r, append(why, "give exactly one of above, below, rises, falls or event")
	}
	name := e.Metric
	switch {
	case e.Event != "":
		name, r.Op = e.Event, OpEvent
		if e.Metric != "" {
			why = append(why, "an event rule has no metric")
		}
		if e.Clear != nil || e.ClearFor != "" {
			why = append(why, "an event rule has no clear level: the device reports when the event ends")
		}
		if e.For != "" {
			why = append(why, "an event rule has no for duration: an event is reported once")
		}
	case e.Rises != nil || e.Falls != nil:
		r.Op = OpRises
		amount := e.Rises
		if e.Falls != nil {
			r.Op, amount = OpFalls, e.Falls
		}
		r.Threshold = *amount
		if !(r.Threshold > 0) || math.IsInf(r.Threshold, 0) {
			why = append(why, "the change must be a positive amount")
		}
		if r.Within <= 0 {
			why = append(why, "a rate rule needs within: the time over which the change is measured")
		}
		if e.Clear != nil || e.For != "" {
			why = append(why, "a rate rule has no clear level or for: it fires on the change and clears when a window passes without it")
		}
	default:
		if e.Within != "" {
			why = append(why, "within belongs to rises/falls rules")
		}
	}
	if kind == devices.KindInvalid {
		return r, why
	}
	m, ok := devices.MetricByName(kind, name)
	switch {
	case !ok:
		return r, append(why, fmt.Sprintf("%s has no metric or event %q (see docs/mqtt.md for the catalog)", kind, name))
	case r.Op == OpEvent && !m.Info().Event:
		why = append(why, fmt.Sprintf("%q is a measured metric, not an event: use metric with above or below", name))
	case r.Op != OpEvent && m.Info().Event:
		why = append(why, fmt.Sprintf("%q is an event: use event: %s", name, name))
	}
	r.Metric = m
	if r.Op == OpEvent || r.Op == OpRises || r.Op == OpFalls {
		return r, why
	}
	n := &e.Above
	r.Op = OpAbove
	if e.Below.Kind != 0 {
		n, r.Op = &e.Below, OpBelow
	}
	v, perDevice, err := threshold(n)
	if err != nil {
		return r, append(why, err.Error())
	}
	r.Threshold, r.PerDevice = v, perDevice
	r.Clear = r.Threshold
	if e.Clear != nil {
		if perDevice {
			why = append(why, "a per_device rule takes its clear level from the device too")
		}
		r.Clear = *e.Clear
	}
	if !perDevice {
		why = append(why, r.checkLevels()...)
	}
	return r, why
}

// checkLevels checks threshold and clear level against each other and the
// metric's plausible range.
func (r *Rule) checkLevels() []string {
	var why []string
	info := r.Metric.Info()
	if !(r.Threshold >= info.Min && r.Threshold <= info.Max) {
		why = append(why, fmt.Sprintf("threshold %g %s is outside the plausible range %g…%g of %s: it would never fire", r.Threshold, info.Unit, info.Min, info.Max, info.Name))
	}
	if r.Op == OpAbove && !(r.Clear <= r.Threshold) {
		why = append(why, fmt.Sprintf("clear %g is above the threshold %g: for an above rule the clear level must be at or below it", r.Clear, r.Threshold))
	}
	if r.Op == OpBelow && !(r.Clear >= r.Threshold) {
		why = append(why, fmt.Sprintf("clear %g is below the threshold %g: for a below rule the clear level must be at or above it", r.Clear, r.Threshold))
	}
	return why
}

// Override changes a rule for one model or one device: its levels, its
// durations, or switches it off. A per_device rule is off for devices that
// set no threshold.
type Override struct {
	Above, Below, Clear *float64
	For, ClearFor       *time.Duration
	// Off switches the rule off (true) or back on (false) over what the
	// model said; nil leaves it as it is.
	Off *bool
}

// ParseOverride reads an override from a YAML mapping such as
// {above: 63, for: 30s} or {off: true}.
func ParseOverride(n *yaml.Node) (Override, error) {
	var e struct {
		Above    *float64 `yaml:"above"`
		Below    *float64 `yaml:"below"`
		Clear    *float64 `yaml:"clear"`
		For      string   `yaml:"for"`
		ClearFor string   `yaml:"clear_for"`
		Off      *bool    `yaml:"off"`
	}
	if err := yamlfile.DecodeNode(n, &e); err != nil {
		return Override{}, err
	}
	o := Override{Above: e.Above, Below: e.Below, Clear: e.Clear, Off: e.Off}
	var why []string
	if e.For != "" {
		d := duration("for", e.For, &why)
		o.For = &d
	}
	if e.ClearFor != "" {
		d := duration("clear_for", e.ClearFor, &why)
		o.ClearFor = &d
	}
	if len(why) > 0 {
		return o, fmt.Errorf("%s", strings.Join(why, "; "))
	}
	return o, nil
}

// Check reports whether o can apply to r (nil if there is no such rule).
func (o Override) Check(r *Rule, id string) error {
	if r == nil {
		return fmt.Errorf("no rule %q to override", id)
	}
	_, err := o.Apply(r)
	return err
}

// Apply returns r changed by o, checked.
func (o Override) Apply(r *Rule) (*Rule, error) {
	v := *r
	if o.Off != nil {
		v.Off = *o.Off
		if v.Off {
			return &v, nil
		}
	}
	if (o.For != nil || o.ClearFor != nil) && r.Op != OpAbove && r.Op != OpBelow {
		// An event is reported once, and a rate rule fires on the change:
		// a for would silence a single smoke report.
		return nil, fmt.Errorf("rule %q is a %s rule: it has no for or clear_for to override (only a threshold rule has)", r.ID, r.Op)
	}
	if o.Above != nil || o.Below != nil || o.Clear != nil {
		if r.Op != OpAbove && r.Op != OpBelow {
			return nil, fmt.Errorf("rule %q is not a threshold rule: only off can be overridden", r.ID)
		}
		if o.Above != nil && r.Op != OpAbove || o.Below != nil && r.Op != OpBelow {
			return nil, fmt.Errorf("rule %q is a %s rule: override its threshold with %s", r.ID, r.Op, r.Op)
		}
	}
	// A new threshold keeps the rule's hysteresis: the clear level moves
	// with it, unless the override sets its own.
	if o.Above != nil {
		v.Threshold, v.Clear, v.PerDevice = *o.Above, *o.Above-(r.Threshold-r.Clear), false
	}
	if o.Below != nil {
		v.Threshold, v.Clear, v.PerDevice = *o.Below, *o.Below+(r.Clear-r.Threshold), false
	}
	if info := r.Metric.Info(); o.Clear == nil && (o.Above != nil || o.Below != nil) && !(v.Clear > info.Min && v.Clear < info.Max) {
		v.Clear = v.Threshold // the moved clear level would be out of reach
	}
	if o.Clear != nil {
		v.Clear = *o.Clear
	}
	if o.For != nil {
		v.For = *o.For
	}
	if o.ClearFor != nil {
		v.ClearFor = *o.ClearFor
	}
	if (v.Op == OpAbove || v.Op == OpBelow) && !v.PerDevice {
		if why := v.checkLevels(); len(why) > 0 {
			return nil, fmt.Errorf("rule %q: %s", r.ID, strings.Join(why, "; "))
		}
	}
	return &v, nil
}
