package rules

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// FuzzParse feeds arbitrary rule files to Parse and compiles what it
// accepts: a rule file is operator input, and a bad one must be reported
// with its line, never crash firewatch or `firewatch rules check`.
// Seeds: defaults.yaml and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(DefaultsYAML())
	f.Add([]byte("rules:\n  - {id: a, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}\n"))
	f.Add([]byte("rules:\n  - {id: b, kind: smoke, event: smoke_alarm, severity: fire}\n  - {id: b, kind: smoke, event: smoke_alarm, severity: fire}\n"))
	f.Add([]byte("timezone: +08:00\nmodels:\n  X:\n    d: {falls: 1}\nrules:\n  - {id: d, kind: hydrant, metric: pressure_mpa, falls: 0.05, within: 10s, when: {time: \"22:00-06:00\", days: [fri]}, severity: warning}\n"))
	f.Add([]byte("rules:\n  - {id: c, kind: charger, metric: slot_power_w, above: per_device, for: 5s, severity: alarm}\n"))
	l := testLedger(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := Parse("fuzz.yaml", b)
		if err != nil {
			return
		}
		for _, r := range set.Rules {
			if r.ID == "" || r.Kind == devices.KindInvalid || r.Kind >= devices.NumKinds || r.Severity == SeverityInvalid || r.Metric == 0 {
				t.Fatalf("accepted a bad rule %+v", *r)
			}
		}
		if _, err := NewEngine(set, l); err != nil {
			t.Fatalf("a valid rule set does not compile: %v", err)
		}
	})
}
