package rules

import (
	"errors"

	"github.com/firewatch-iot/firewatch/devices"
)

// Live registry changes (issue 18): the pipeline compiles an engine for
// each new snapshot of the registry off the hot path and hands the old
// engine's state over between two messages (AdoptLedger, reload.go).

// NewEngineLenient is NewEngine for a registry that has already been
// changed: a device whose own rule overrides do not compile against set is
// compiled with the rules of its kind and model instead, and the engine is
// returned together with the *devices.LoadError naming those devices. A
// failure of another kind returns no engine.
func NewEngineLenient(set *Set, l *devices.Ledger) (*Engine, error) {
	return newEngine(set, l, true)
}

// plainLayout is the layout of d without its own rule overrides.
func (c *compiler) plainLayout(d *devices.Device) (uint16, error) {
	dd := *d
	dd.Rules = nil
	return c.layoutOf(&dd)
}

// CheckDevice reports whether d's rule overrides compile against the
// engine's rule set: every override names a rule of d's kind and is a
// valid override of it. It is what NewEngine would report for d, without
// compiling the whole registry, for a change to be refused before it is
// applied.
func (e *Engine) CheckDevice(d *devices.Device) error {
	c := compiler{e: &Engine{set: e.set, kindRules: e.kindRules}, variants: map[string]uint16{}, layouts: map[string]uint16{}, plain: map[[2]uint8]uint16{}}
	_, err := c.layoutOf(d)
	var le *devices.LoadError
	if errors.As(err, &le) {
		return le
	}
	return err
}
