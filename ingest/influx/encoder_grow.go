package influx

import "github.com/firewatch-iot/firewatch/devices"

// Grow adds the measurement and tags of the devices of l beyond those the
// encoder knows: l is a newer snapshot of the registry whose device
// indices extend the one the encoder was made for (devices.Ledger.Apply
// keeps them stable; issue 18). It costs the added devices and one pass
// over the shared tag sets, not every device. Grow is not safe for
// concurrent use with the encoder's other methods: the caller holds them
// off (the pipeline adopts a change between two messages). A change that
// edits a device's kind or grid needs NewEncoder instead.
func (e *Encoder) Grow(l *devices.Ledger) {
	if len(l.Devices) <= len(e.place) {
		return
	}
	byTags := make(map[string]uint32, len(e.places))
	for i := range e.places {
		byTags[string(e.places[i].b)] = uint32(i)
	}
	for i := len(e.place); i < len(l.Devices); i++ {
		// As NewEncoder does for each device; keep the two in step.
		d := &l.Devices[i]
		p := newPlaceTags(d.Kind, d.Grid)
		pi, ok := byTags[string(p.b)]
		if !ok {
			pi = uint32(len(e.places))
			byTags[string(p.b)] = pi
			e.places = append(e.places, p)
		}
		e.place = append(e.place, pi)
		e.ids = appendKey(e.ids, d.ID)
		e.off = append(e.off, uint32(len(e.ids)))
	}
}
