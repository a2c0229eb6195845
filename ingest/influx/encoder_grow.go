package influx

import "github.com/firewatch-iot/firewatch/devices"

// Grow adds the measurement and tags of the devices of l beyond those the
// encoder knows: l is a newer snapshot of the registry whose device
// indices extend the one the encoder was made for (devices.Ledger.Apply
// keeps them stable; issue 18). It costs the added devices only, amortized.
// Grow is not safe for concurrent use with the encoder's other methods:
// the caller holds them off (the pipeline adopts a change between two
// messages). A change that edits a device's id, kind or grid needs
// NewEncoder instead.
func (e *Encoder) Grow(l *devices.Ledger) {
	for i := len(e.meas); i < len(l.Devices); i++ {
		// As NewEncoder does for each device; keep the two in step.
		d := &l.Devices[i]
		kind := d.Kind.String()
		if d.Kind == devices.KindInvalid || d.Kind >= devices.NumKinds {
			kind = "unknown"
		}
		start := len(e.arena)
		e.arena = appendName(e.arena, kind)
		e.meas = append(e.meas, uint8(len(e.arena)-start))
		g := d.Grid
		if len(g) == 12 {
			e.arena = appendTag(e.arena, "county", g.County())
		}
		e.arena = appendTag(e.arena, "device", d.ID)
		e.arena = appendTag(e.arena, "kind", kind)
		e.split = append(e.split, uint16(len(e.arena)-start))
		if len(g) == 12 {
			e.arena = appendTag(e.arena, "town", g.Town())
			e.arena = appendTag(e.arena, "village", g.Village())
		}
		e.off = append(e.off, uint32(len(e.arena)))
	}
}
