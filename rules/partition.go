package rules

import (
	"io"
	"math"

	"github.com/firewatch-iot/firewatch/devices"
)

// Cluster mode (issue 15, docs/cluster.md "State that moves with a
// partition"): the owner of a partition checkpoints the rule state of that
// partition's devices only, by device id (indices differ between
// instances), in the format of the restart checkpoint (WriteTo), and the
// next owner restores those devices only (RestoreDevices), leaving every
// other device's state as it is.

// SnapshotDevices copies the state of devs (of ledger l) into s, reusing
// its buffers, and returns it: WriteTo then encodes those devices only,
// with their ids. It must run on the goroutine that calls Eval; it copies
// the devices' fixed state and slots (about 100–200 bytes a device).
func (e *Engine) SnapshotDevices(s *Snapshot, l *devices.Ledger, devs []devices.Index) *Snapshot {
	if s == nil {
		s = &Snapshot{}
	}
	s.e = e
	s.ids, s.dev, s.states = s.ids[:0], s.dev[:0], s.states[:0]
	clear(s.eras)
	clear(s.skews)
	for _, d := range devs {
		if int(d) >= len(e.dev) || int(d) >= len(l.Devices) {
			continue
		}
		i := devices.Index(len(s.dev))
		ds := e.dev[d]
		size := e.layouts[ds.layout].size
		from := ds.slot
		ds.slot = uint32(len(s.states))
		s.states = append(s.states, e.states[from:from+size]...)
		s.dev = append(s.dev, ds)
		s.ids = append(s.ids, l.Devices[d].ID)
		if er, ok := e.eras[d]; ok {
			setIn(&s.eras, i, er)
		}
		if sk, ok := e.skews[d]; ok {
			setIn(&s.skews, i, sk)
		}
	}
	return s
}

// RestoreDevices reads a snapshot (WriteTo of SnapshotDevices, or of
// Snapshot) and gives each of devs the state it holds for it, by device
// id and by rule as Restore does; devs the snapshot does not hold start as
// never heard from (Forget). Devices not in devs keep their state. It
// returns how many of devs were restored. On an error nothing changed.
// Call it on the goroutine that calls Eval.
func (e *Engine) RestoreDevices(r io.Reader, l *devices.Ledger, devs []devices.Index) (int, error) {
	old, got, err := e.decodeState(r, l, true)
	if err != nil {
		return 0, err
	}
	e.Forget(devs)
	want := make(map[devices.Index]bool, len(devs))
	for _, d := range devs {
		want[d] = true
	}
	n := 0
	plans := map[[2]uint16][]span{}
	for k, d := range got {
		if !want[d] || int(d) >= len(e.dev) {
			continue
		}
		od, nd := &old.dev[k], &e.dev[d]
		slot, layout := nd.slot, nd.layout
		*nd = *od
		nd.slot, nd.layout = slot, layout
		k := [2]uint16{od.layout, layout}
		plan, ok := plans[k]
		if !ok {
			plan = e.spans(old, od.layout, layout)
			plans[k] = plan
		}
		for _, s := range plan {
			copy(e.states[slot+s.to:slot+s.to+s.n], old.states[od.slot+s.from:od.slot+s.from+s.n])
		}
		if er, ok := old.eras[d]; ok {
			setIn(&e.eras, d, er)
		}
		if sk, ok := old.skews[d]; ok {
			setIn(&e.skews, d, sk)
		}
		n++
	}
	return n, nil
}

// setIn sets (*m)[k] = v, making the map on first use (most devices have
// no era nor skew: the maps stay nil).
func setIn[V any](m *map[devices.Index]V, k devices.Index, v V) {
	if *m == nil {
		*m = make(map[devices.Index]V)
	}
	(*m)[k] = v
}

// span is a run of slots that keeps its meaning from one layout to another.
type span struct{ from, to, n uint32 }

// spans is adopt's plan of one layout pair: which slots of old's layout
// from carry over to e's layout to (same rule id, metric, op and width).
func (e *Engine) spans(old *Engine, from, to uint16) []span {
	if int(from) >= len(old.layouts) || int(to) >= len(e.layouts) || from == math.MaxUint16 {
		return nil
	}
	ol, nl := &old.layouts[from], &e.layouts[to]
	var s []span
	for j, np := range nl.places {
		nc := &e.rules[np.rule]
		for _, op := range ol.places {
			oc := &old.rules[op.rule]
			if oc.rule.ID != nc.rule.ID || oc.rule.Metric != nc.rule.Metric || oc.op != nc.op || oc.width != nc.width {
				continue
			}
			ch := min(np.channels, op.channels)
			if ch > 0 {
				s = append(s, span{from: op.offset, to: nl.places[j].offset, n: uint32(ch) * uint32(nc.width)})
			}
			break
		}
	}
	return s
}
