package rules

import (
	"errors"
	"fmt"
	"math"

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

// Grow adds state for the devices of l beyond those the engine knows: l is
// a newer snapshot of the registry whose device indices extend the one the
// engine was compiled for (devices.Ledger.Apply keeps them stable), and
// whose other devices kept their kind, channels, model and overrides (no
// devices.Diff.Reset). It costs the added devices only, amortized, where
// compiling a new engine and adopting its state costs every device. A new
// device whose overrides do not compile gets the rules of its kind and
// model, and the *devices.LoadError naming it is returned.
//
// Grow must run on the goroutine that calls Eval, between two messages.
func (e *Engine) Grow(l *devices.Ledger) error {
	c := e.comp
	if c == nil {
		return errors.New("rules: engine cannot grow")
	}
	var probs []devices.Problem
	for i := len(e.dev); i < len(l.Devices); i++ {
		d := &l.Devices[i]
		li, err := c.layoutOf(d)
		if err != nil {
			var le *devices.LoadError
			if !errors.As(err, &le) {
				return err
			}
			for _, p := range le.Problems {
				p.File = l.File
				probs = append(probs, p)
			}
			if li, err = c.plainLayout(d); err != nil {
				return err
			}
		}
		total, size := uint64(len(e.states)), e.layouts[li].size
		if total+uint64(size) > math.MaxUint32 {
			return fmt.Errorf("compile rules: %d state slots exceed the arena's 32-bit index", total+uint64(size))
		}
		e.dev = append(e.dev, devState{slot: uint32(total), layout: li})
		e.states = append(e.states, make([]uint32, size)...)
	}
	if len(probs) > 0 {
		return &devices.LoadError{Problems: probs}
	}
	return nil
}
