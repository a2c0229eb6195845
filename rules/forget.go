package rules

import "github.com/firewatch-iot/firewatch/devices"

// Forget resets the state of devs to that of devices never heard from:
// pending for/clear_for, firing flags, rate windows, the sequence window,
// the clock's lead. Cluster mode (issue 15) calls it when an instance
// begins to handle a partition again: what it remembers of those devices
// dates from when it last handled them, and a stale "firing" would swallow
// a new alarm, a stale pending for would raise one early. Call it on the
// goroutine that calls Eval.
func (e *Engine) Forget(devs []devices.Index) {
	for _, d := range devs {
		if int(d) >= len(e.dev) {
			continue
		}
		ds := &e.dev[d]
		size := e.layouts[ds.layout].size
		clear(e.states[ds.slot : ds.slot+size])
		*ds = devState{slot: ds.slot, layout: ds.layout}
		delete(e.eras, d)
		delete(e.skews, d)
	}
}
