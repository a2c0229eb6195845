package main

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// FuzzRulesParse feeds arbitrary rule files to rules.Parse and compiles
// what it accepts for the test ledger: a rule file is operator input, and a
// bad one must be reported, never crash firewatch or its `rules check`.
// (It lives here because rules/ is being rewritten; it can move there.)
// Seeds: rules/defaults.yaml and testdata/fuzz/FuzzRulesParse.
func FuzzRulesParse(f *testing.F) {
	f.Add(rules.DefaultsYAML())
	f.Add([]byte("rules:\n  - {id: a, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}\n"))
	f.Add([]byte("rules:\n  - {id: b, kind: smoke, event: smoke_alarm, severity: fire}\n  - {id: b, kind: smoke, event: smoke_alarm, severity: fire}\n"))
	f.Add([]byte("rules:\n  - {id: c, kind: hydrant, metric: pressure_mpa, below: 0.1, clear: 0.05, severity: alarm}\n"))
	l, err := devices.LoadLedger("../../devices/testdata/ledger.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := rules.Parse("fuzz.yaml", b)
		if err != nil {
			return
		}
		for _, r := range set.Rules {
			if r.ID == "" || r.Kind == devices.KindInvalid || r.Kind >= devices.NumKinds || r.Severity == rules.SeverityInvalid {
				t.Fatalf("accepted a bad rule %+v", *r)
			}
		}
		rules.NewEngine(set, l) // must not panic
	})
}
