package devices

import (
	"maps"
	"slices"
)

// Change is a set of edits to the registry, applied atomically by
// Ledger.Apply. An upsert replaces the whole entry with that id (or adds
// it); a delete names an existing id.
type Change struct {
	// Places sets the name of each code; "" deletes the code.
	Places         map[string]string
	UpsertStations []StationEntry
	DeleteStations []string
	UpsertGateways []GatewayEntry
	DeleteGateways []string
	UpsertDevices  []DeviceEntry
	DeleteDevices  []string
}

// Diff says what a change did, for the ledger's users to adopt it.
type Diff struct {
	// Added, Removed and Edited are device indices; Edited: any field
	// changed (an existing device upserted with the same entry is not
	// edited).
	Added, Removed, Edited []Index
	// Reset is the subset of Edited whose kind, channels, model or rule
	// overrides changed: what rules apply to it changed, so its rule
	// state restarts (the model selects the rule set's per-model
	// overrides).
	Reset []Index
	// Stations are the ids of stations added, edited or removed.
	Stations []string
	// Gateways are the ids of gateways added, edited or removed.
	Gateways []string
}

// Empty reports whether the change changed nothing.
func (d *Diff) Empty() bool {
	return len(d.Added)+len(d.Removed)+len(d.Edited)+len(d.Stations)+len(d.Gateways) == 0
}

// Len is the number of device slots, tombstones included: len(l.Devices),
// the size of arrays indexed by Index.
func (l *Ledger) Len() int { return len(l.Devices) }

// Version is 1 for a ledger made by Build or ParseLedger and one more for
// each Apply that led to it.
func (l *Ledger) Version() uint64 { return l.version }

// Apply checks the ledger that c makes of l, reporting every problem as
// Build does (*LoadError; Index is the position in c's slice, -1 for a
// delete or for a device the change affects indirectly, such as one
// whose station is deleted), and returns it as a new snapshot with what
// changed. l is not modified and stays usable by its readers.
//
// Device indices are stable: an edited device keeps its Index, an added
// one takes the next, a removed one leaves a tombstone (Device.Removed;
// Lookup no longer finds it; Len still counts it). Build and ParseLedger
// compact tombstones away: a restart renumbers, so state kept across
// restarts goes by device id.
func (l *Ledger) Apply(c *Change) (*Ledger, *Diff, error) {
	n := &Ledger{File: l.File, Devices: l.Devices, Stations: l.Stations, Places: l.Places, Gateways: l.Gateways,
		idx: l.idx, gatewayID: l.gatewayID, stationID: l.stationID, uitds: l.uitds, version: l.version + 1}
	if n.idx == nil {
		n.idx = newIDIndexCap(0)
	}
	b := &builder{name: l.File, l: n, text: arena{chunk: 4 << 10}}
	d := &Diff{}
	n.applyPlaces(b, c)
	n.applyGateways(b, l, c, d)
	stationsChanged := n.applyStations(b, l, c, d)
	b.indexStations()
	if stationsChanged || len(c.UpsertDevices)+len(c.DeleteDevices) > 0 {
		n.applyDevices(b, l, c, d, stationsChanged)
	}
	if len(b.probs) > 0 {
		return nil, nil, &LoadError{Problems: b.probs}
	}
	return n, d, nil
}

func (n *Ledger) applyPlaces(b *builder, c *Change) {
	if len(c.Places) == 0 {
		return
	}
	n.Places = maps.Clone(n.Places)
	if n.Places == nil {
		n.Places = map[string]string{}
	}
	for _, code := range slices.Sorted(maps.Keys(c.Places)) {
		if name := c.Places[code]; name != "" {
			b.place(code, name)
		} else {
			delete(n.Places, code)
		}
	}
}

func (n *Ledger) applyGateways(b *builder, l *Ledger, c *Change, d *Diff) {
	if len(c.UpsertGateways)+len(c.DeleteGateways) == 0 {
		return
	}
	n.Gateways = maps.Clone(l.Gateways)
	if n.Gateways == nil {
		n.Gateways = map[string]*Gateway{}
	}
	deleted := map[string]bool{}
	for _, id := range c.DeleteGateways {
		at := Problem{Section: "gateways", Index: -1, ID: id, Field: "id"}
		switch {
		case deleted[id]:
			b.problem(at, "gateway %q: deleted twice", id)
		case n.Gateways[id] == nil:
			b.problem(at, "gateway %q: unknown gateway", id)
		default:
			deleted[id] = true
			delete(n.Gateways, id)
			d.Gateways = append(d.Gateways, id)
		}
	}
	upserted := map[string]bool{}
	for i := range c.UpsertGateways {
		e := &c.UpsertGateways[i]
		at := Problem{Line: e.Line, Section: "gateways", Index: i, ID: e.ID, Field: "id"}
		if err := checkID(e.ID); err != nil {
			b.problem(at, "gateway: %v", err)
			continue
		}
		if deleted[e.ID] || upserted[e.ID] {
			b.problem(at, "gateway %q: changed twice in one change", e.ID)
			continue
		}
		upserted[e.ID] = true
		old := l.Gateways[e.ID]
		n.Gateways[e.ID] = &Gateway{ID: e.ID, SecretHash: e.SecretHash, Line: e.Line}
		if old == nil || old.SecretHash != e.SecretHash {
			d.Gateways = append(d.Gateways, e.ID)
		}
	}
}

// applyStations makes n's stations and reports whether any changed.
func (n *Ledger) applyStations(b *builder, l *Ledger, c *Change, d *Diff) bool {
	if len(c.UpsertStations)+len(c.DeleteStations) == 0 {
		return false
	}
	deleted := map[string]bool{}
	for _, id := range c.DeleteStations {
		at := Problem{Section: "stations", Index: -1, ID: id, Field: "id"}
		switch {
		case deleted[id]:
			b.problem(at, "station %q: deleted twice", id)
		case l.stationID[id] == nil:
			b.problem(at, "station %q: unknown station", id)
		default:
			deleted[id] = true
		}
	}
	up := map[string]int{}
	for i := range c.UpsertStations {
		id := c.UpsertStations[i].ID
		if deleted[id] {
			b.problem(Problem{Section: "stations", Index: i, ID: id, Field: "id"}, "station %q: both changed and deleted", id)
			continue
		}
		if _, twice := up[id]; !twice {
			up[id] = i
		}
	}
	n.Stations, n.stationID = nil, map[string]*Station{}
	done := map[int]bool{}
	for _, s := range l.Stations {
		if deleted[s.ID] {
			d.Stations = append(d.Stations, s.ID)
			continue
		}
		if i, ok := up[s.ID]; ok {
			done[i] = true
			if ns := b.station(i, &c.UpsertStations[i]); ns != nil && !stationEqual(s, ns) {
				d.Stations = append(d.Stations, s.ID)
			}
			continue
		}
		n.Stations = append(n.Stations, s)
		n.stationID[s.ID] = s
	}
	for i := range c.UpsertStations {
		if done[i] || deleted[c.UpsertStations[i].ID] {
			continue
		}
		if s := b.station(i, &c.UpsertStations[i]); s != nil {
			d.Stations = append(d.Stations, s.ID)
		}
	}
	return true
}

func stationEqual(a, b *Station) bool {
	return a.ID == b.ID && a.Name == b.Name && slices.Equal(a.Grids, b.Grids) && a.Endpoint == b.Endpoint &&
		a.Lat == b.Lat && a.Lon == b.Lon
}

func (n *Ledger) applyDevices(b *builder, l *Ledger, c *Change, d *Diff, stationsChanged bool) {
	n.Devices = make([]Device, len(l.Devices), len(l.Devices)+len(c.UpsertDevices)) // one copy, not Clone then Grow
	copy(n.Devices, l.Devices)
	deleted := map[string]bool{}
	for _, id := range c.DeleteDevices {
		at := Problem{Section: "devices", Index: -1, ID: id, Field: "id"}
		old, ok := l.LookupID(id)
		switch {
		case deleted[id]:
			b.problem(at, "device %q: deleted twice", id)
		case !ok:
			b.problem(at, "device %q: unknown device", id)
		default:
			deleted[id] = true
			n.Devices[old.Index].Removed = true
			d.Removed = append(d.Removed, old.Index)
		}
	}
	// New ids go into a copy of the index (readers of l use l's), grown
	// when it would be more than half full.
	fresh := 0
	for i := range c.UpsertDevices {
		if _, ok := l.LookupID(c.UpsertDevices[i].ID); !ok {
			fresh++
		}
	}
	if fresh > 0 {
		if n.idx.full(fresh) {
			n.idx = newIDIndexCap(n.idx.count + fresh)
			for i := range l.Devices {
				if !l.Devices[i].Removed {
					n.idx.set(l.Devices[i].ID, Index(i))
				}
			}
		} else {
			n.idx = n.idx.clone()
		}
	}
	if len(c.UpsertDevices) > 0 {
		n.gatewayID = maps.Clone(l.gatewayID)
		if n.gatewayID == nil {
			n.gatewayID = map[string]string{}
		}
	}
	upserted := map[string]bool{}
	var edited []Index
	mine := map[Index]bool{} // slots the change wrote
	for i := range c.UpsertDevices {
		e := &c.UpsertDevices[i]
		at := Problem{Line: e.Line, Section: "devices", Index: i, ID: e.ID, Field: "id"}
		if err := checkID(e.ID); err != nil {
			b.problem(at, "device: %v", err)
			continue
		}
		if deleted[e.ID] {
			b.problem(at, "device %q: both changed and deleted", e.ID)
			continue
		}
		if upserted[e.ID] {
			b.problem(at, "device %q: duplicate id", e.ID)
			continue
		}
		upserted[e.ID] = true
		dev := b.newDevice(i, e, nil)
		if old, ok := l.LookupID(e.ID); ok {
			dev.Index = old.Index
			n.Devices[old.Index] = dev
			edited = append(edited, old.Index)
		} else {
			dev.Index = Index(len(n.Devices))
			n.Devices = append(n.Devices, dev)
			n.idx.set(dev.ID, dev.Index)
			d.Added = append(d.Added, dev.Index)
		}
		mine[dev.Index] = true
	}
	if stationsChanged {
		// Devices the change did not name still follow their station:
		// the one they name, or the one now covering their grid.
		for j := range n.Devices {
			dv := &n.Devices[j]
			if dv.Removed || mine[Index(j)] {
				continue
			}
			var st *Station
			at := Problem{Line: dv.Line, Section: "devices", Index: -1, ID: dv.ID}
			if dv.flags&stationNamed != 0 {
				name := dv.Station.ID
				if st = n.stationID[name]; st == nil {
					at.Field = "station"
					b.problem(at, "device %q: unknown station %q", dv.ID, name)
				}
			} else if st = b.covering(dv.Grid); st == nil {
				at.Field = "grid"
				b.problem(at, "device %q: no micro fire station covers grid %s; name one with station: or add the grid to a station", dv.ID, dv.Grid)
			}
			if st != nil && dv.Station != nil && st.ID != dv.Station.ID {
				edited = append(edited, Index(j))
			}
			dv.Station = st
		}
	}
	if n.uitds != nil && len(n.uitds.entries) > 0 {
		for i := range n.Devices {
			if d := &n.Devices[i]; d.flags&hbDerived != 0 {
				d.Heartbeat, d.flags = 0, d.flags&^hbDerived
			}
		}
		b.uitds(n.uitds.entries)
	}
	slices.Sort(edited)
	edited = slices.Compact(edited)
	for _, i := range edited {
		o, nd := &l.Devices[i], &n.Devices[i]
		if deviceEqual(o, nd) {
			continue
		}
		d.Edited = append(d.Edited, i)
		if o.Kind != nd.Kind || o.Channels != nd.Channels || o.Model != nd.Model || !rulesEqual(o, nd) {
			d.Reset = append(d.Reset, i)
		}
	}
}

// deviceEqual reports whether a and b are the same entry (the station by id).
func deviceEqual(a, b *Device) bool {
	sa, sb := "", ""
	if a.Station != nil {
		sa = a.Station.ID
	}
	if b.Station != nil {
		sb = b.Station.ID
	}
	na, nb := NBIoT{}, NBIoT{}
	if a.NBIoT != nil {
		na = *a.NBIoT
	}
	if b.NBIoT != nil {
		nb = *b.NBIoT
	}
	return a.ID == b.ID && a.Kind == b.Kind && a.Model == b.Model && a.Grid == b.Grid && a.Address == b.Address &&
		a.Lat == b.Lat && a.Lon == b.Lon && a.Unit == b.Unit && a.Phone == b.Phone && a.Contact == b.Contact && sa == sb &&
		a.flags&stationNamed == b.flags&stationNamed && a.Gateway == b.Gateway && a.Channels == b.Channels &&
		a.Heartbeat == b.Heartbeat && a.SecretHash == b.SecretHash && na == nb && a.Point == b.Point &&
		a.Removed == b.Removed && rulesEqual(a, b)
}

func rulesEqual(a, b *Device) bool {
	if len(a.Rules) == 0 && len(b.Rules) == 0 {
		return true
	}
	ta, _ := rulesText(a.Rules)
	tb, _ := rulesText(b.Rules)
	return ta == tb
}
