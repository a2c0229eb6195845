package rules

import (
	_ "embed"
	"fmt"
	"os"
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
}

// Actions are the linkage actions a rule may carry.
var Actions = map[string]bool{"cut_power": true}

type ruleEntry struct {
	ID       string   `yaml:"id"`
	Kind     string   `yaml:"kind"`
	Metric   string   `yaml:"metric"`
	Event    string   `yaml:"event"`
	Above    *float64 `yaml:"above"`
	Below    *float64 `yaml:"below"`
	Clear    *float64 `yaml:"clear"`
	For      string   `yaml:"for"`
	Severity string   `yaml:"severity"`
	Action   string   `yaml:"action"`
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
		Rules []yaml.Node `yaml:"rules"`
	}
	if err := yamlfile.Decode(b, &doc); err != nil {
		return nil, &devices.LoadError{Problems: []devices.Problem{{File: name, Line: yamlfile.Line(err), Reason: yamlfile.Reason(err)}}}
	}
	var probs []devices.Problem
	bad := func(line int, format string, args ...any) {
		probs = append(probs, devices.Problem{File: name, Line: line, Reason: fmt.Sprintf(format, args...)})
	}
	set := &Set{}
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
	if len(probs) > 0 {
		return nil, &devices.LoadError{Problems: probs}
	}
	return set, nil
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
	}
	if e.Action != "" && !Actions[e.Action] {
		why = append(why, fmt.Sprintf("unknown action %q (known: cut_power)", e.Action))
	}
	if e.For != "" {
		d, err := time.ParseDuration(e.For)
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("for: %v", err))
		case d < 0:
			why = append(why, "for is negative")
		}
		r.For = d
	}
	ways := 0
	for _, set := range []bool{e.Above != nil, e.Below != nil, e.Event != ""} {
		if set {
			ways++
		}
	}
	if ways != 1 {
		return r, append(why, "give exactly one of above, below or event")
	}
	name := e.Metric
	if e.Event != "" {
		name = e.Event
		r.Op = OpEvent
		if e.Metric != "" {
			why = append(why, "an event rule has no metric")
		}
		if e.Clear != nil {
			why = append(why, "an event rule has no clear level: the device reports when the event ends")
		}
		if e.For != "" {
			why = append(why, "an event rule has no for duration: an event is reported once")
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
	if r.Op == OpEvent {
		return r, why
	}
	info := m.Info()
	if e.Above != nil {
		r.Op, r.Threshold = OpAbove, *e.Above
	} else {
		r.Op, r.Threshold = OpBelow, *e.Below
	}
	r.Clear = r.Threshold
	if e.Clear != nil {
		r.Clear = *e.Clear
	}
	if r.Threshold < info.Min || r.Threshold > info.Max {
		why = append(why, fmt.Sprintf("threshold %g %s is outside the plausible range %g…%g of %s: it would never fire", r.Threshold, info.Unit, info.Min, info.Max, name))
	}
	if r.Op == OpAbove && r.Clear > r.Threshold {
		why = append(why, fmt.Sprintf("clear %g is above the threshold %g: for an above rule the clear level must be at or below it", r.Clear, r.Threshold))
	}
	if r.Op == OpBelow && r.Clear < r.Threshold {
		why = append(why, fmt.Sprintf("clear %g is below the threshold %g: for a below rule the clear level must be at or above it", r.Clear, r.Threshold))
	}
	return r, why
}
