package devices

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Build checks the registry e and returns it as a ledger; name is used in
// messages (a file, "registry"). Every problem is reported, as a
// *LoadError whose Problems carry Section, Index, ID and Field. Build does
// not keep e: the caller may reuse it.
func Build(name string, e *Entries) (*Ledger, error) {
	b := newBuilder(name, len(e.Devices))
	b.build(e)
	if len(b.probs) > 0 {
		if b.placesLine > 0 || hasLines(b.probs) {
			slices.SortStableFunc(b.probs, func(x, y Problem) int { return x.Line - y.Line })
		}
		return nil, &LoadError{Problems: b.probs}
	}
	return b.l, nil
}

func hasLines(ps []Problem) bool {
	for _, p := range ps {
		if p.Line > 0 {
			return true
		}
	}
	return false
}

// builder makes a Ledger of Entries, collecting every problem rather than
// stopping at the first.
type builder struct {
	name  string
	l     *Ledger
	probs []Problem
	// placesLine is the line places problems are reported at (1 for a
	// file: the section has no line of its own per code).
	placesLine int
	// cover maps each grid prefix a station covers to the first station
	// that lists it: the covering station of a grid is that of its
	// longest listed prefix.
	cover map[string]*Station
	// strs interns the strings many devices repeat (model, unit, grid,
	// phone, contact, station), so that a million devices hold one copy
	// of each.
	strs map[string]string
	// text holds the devices' strings (arena.go).
	text arena
}

func newBuilder(name string, devices int) *builder {
	return &builder{name: name, l: &Ledger{
		File:      name,
		Places:    map[string]string{},
		stationID: map[string]*Station{},
		Gateways:  map[string]*Gateway{},
		gatewayID: map[string]string{},
		idx:       newIDIndexCap(devices),
		version:   1,
	}, strs: map[string]string{}, text: arena{chunk: arenaChunk}}
}

func (b *builder) problem(p Problem, format string, args ...any) {
	p.File = b.name
	p.Reason = fmt.Sprintf(format, args...)
	b.probs = append(b.probs, p)
}

func (b *builder) build(e *Entries) {
	b.head(e, len(e.Devices))
	for i := range e.Devices {
		b.device(i, &e.Devices[i], nil)
	}
	b.tail(e.UITDs)
}

// head builds the sections that devices name: gateways, places, stations.
func (b *builder) head(e *Entries, devices int) {
	for i := range e.Gateways {
		b.gateway(i, &e.Gateways[i])
	}
	for code, n := range e.Places {
		b.place(code, n)
	}
	for i := range e.Stations {
		b.station(i, &e.Stations[i])
	}
	b.indexStations()
	b.l.Devices = make([]Device, 0, devices)
}

// device adds device entry i (its position in Entries, or in the file's
// list), with rules its override nodes if read from a file.
func (b *builder) device(i int, de *DeviceEntry, rules map[string]yaml.Node) {
	l := b.l
	if err := checkID(de.ID); err != nil {
		b.problem(Problem{Line: de.Line, Section: "devices", Index: i, ID: de.ID, Field: "id"}, "device: %v", err)
		return
	}
	if l.idx.full(1) { // more devices than said: grow (never when the count is right)
		idx := newIDIndexCap(2 * (l.idx.count + 1))
		for j := range l.Devices {
			idx.set(l.Devices[j].ID, Index(j))
		}
		l.idx = idx
	}
	if _, fresh := l.idx.insert(de.ID, Index(len(l.Devices))); !fresh {
		b.problem(Problem{Line: de.Line, Section: "devices", Index: i, ID: de.ID, Field: "id"}, "device %q: duplicate id", de.ID)
		return
	}
	d := b.newDevice(i, de, rules)
	d.Index = Index(len(l.Devices))
	l.Devices = append(l.Devices, d)
}

// tail reads the UITDs, which name devices, and ends the build.
func (b *builder) tail(uitds []UITDEntry) {
	b.uitds(slices.Clone(uitds)) // uitd.go
	b.strs = nil
}

func (b *builder) gateway(i int, e *GatewayEntry) {
	l := b.l
	at := Problem{Line: e.Line, Section: "gateways", Index: i, ID: e.ID, Field: "id"}
	if err := checkID(e.ID); err != nil {
		b.problem(at, "gateway: %v", err)
		return
	}
	if l.Gateways[e.ID] != nil {
		b.problem(at, "gateway %q: duplicate id", e.ID)
		return
	}
	l.Gateways[e.ID] = &Gateway{ID: e.ID, SecretHash: e.SecretHash, Line: e.Line}
}

func (b *builder) place(code, name string) {
	if _, err := ParsePrefix(code); err != nil {
		b.problem(Problem{Line: b.placesLine, Section: "places", Index: -1, ID: code}, "places: %v", err)
		return
	}
	b.l.Places[code] = name
}

// station checks e and adds it, unless its id is missing or taken.
func (b *builder) station(i int, e *StationEntry) *Station {
	l := b.l
	at := func(field string) Problem {
		return Problem{Line: e.Line, Section: "stations", Index: i, ID: e.ID, Field: field}
	}
	if err := checkID(e.ID); err != nil {
		b.problem(at("id"), "station: %v", err)
		return nil
	}
	if l.stationID[e.ID] != nil {
		b.problem(at("id"), "station %q: duplicate id", e.ID)
		return nil
	}
	if e.Name == "" {
		b.problem(at("name"), "station %q: name is missing", e.ID)
	}
	if len(e.Grids) == 0 {
		b.problem(at("grids"), "station %q: grids is empty: list the code prefixes it covers", e.ID)
	}
	for _, g := range e.Grids {
		if _, err := ParsePrefix(g); err != nil {
			b.problem(at("grids"), "station %q: %v", e.ID, err)
		}
	}
	if !strings.HasPrefix(e.Endpoint, "http://") && !strings.HasPrefix(e.Endpoint, "https://") {
		b.problem(at("endpoint"), "station %q: endpoint %q is not an http(s) URL", e.ID, e.Endpoint)
	}
	s := &Station{ID: e.ID, Name: e.Name, Grids: slices.Clone(e.Grids), Endpoint: e.Endpoint, Lat: e.Lat, Lon: e.Lon}
	l.Stations = append(l.Stations, s)
	l.stationID[e.ID] = s
	return s
}

// indexStations builds the coverage table of the ledger's stations.
func (b *builder) indexStations() {
	b.cover = map[string]*Station{}
	for _, s := range b.l.Stations {
		for _, p := range s.Grids {
			if _, taken := b.cover[p]; !taken {
				b.cover[p] = s
			}
		}
	}
}

// covering returns the station whose coverage is the longest prefix of g:
// of two stations listing the same prefix, the first.
func (b *builder) covering(g Grid) *Station {
	for _, n := range [...]int{12, 9, 6, 4, 2} {
		if len(g) >= n {
			if s := b.cover[string(g[:n])]; s != nil {
				return s
			}
		}
	}
	return nil
}

func (b *builder) intern(s string) string {
	if s == "" {
		return ""
	}
	if b.strs == nil {
		return b.text.str(s)
	}
	if c, ok := b.strs[s]; ok {
		return c
	}
	c := b.text.str(s)
	b.strs[c] = c
	return c
}

// newDevice checks one device entry (position i), reporting every problem,
// and returns the device it describes. rules, when the entry was read from
// a file, are its override nodes from the file's own tree (their lines are
// the file's); otherwise the entry's Rules text is parsed.
func (b *builder) newDevice(i int, e *DeviceEntry, rules map[string]yaml.Node) Device {
	l := b.l
	bad := func(field, format string, args ...any) {
		b.problem(Problem{Line: e.Line, Section: "devices", Index: i, ID: e.ID, Field: field}, format, args...)
	}
	kind, err := ParseKind(e.Kind)
	if err != nil {
		bad("kind", "device %q: %v", e.ID, err)
	}
	grid, err := ParseGrid(e.Grid)
	if err != nil {
		bad("grid", "device %q: %v", e.ID, err)
	}
	if e.Lat < -90 || e.Lat > 90 || e.Lon < -180 || e.Lon > 180 || math.IsNaN(e.Lat) || math.IsNaN(e.Lon) {
		field := "lat"
		if e.Lat >= -90 && e.Lat <= 90 {
			field = "lon"
		}
		bad(field, "device %q: coordinates %g,%g out of range", e.ID, e.Lat, e.Lon)
	}
	if e.Gateway != "" {
		if err := checkID(e.Gateway); err != nil {
			bad("gateway", "device %q: gateway: %v", e.ID, err)
		}
	}
	if e.Heartbeat < 0 {
		bad("heartbeat", "device %q: heartbeat %v is negative", e.ID, e.Heartbeat)
	}
	if e.Channels < 0 || e.Channels > MaxChannels {
		bad("channels", "device %q: channels %d is outside 0…%d", e.ID, e.Channels, MaxChannels)
	}
	if msg := e.NBIoT.check(); msg != "" { // nbiot.go
		bad("nbiot", "device %q: %s", e.ID, msg)
	}
	var st *Station
	switch {
	case e.Station != "":
		if st = l.stationID[e.Station]; st == nil {
			bad("station", "device %q: unknown station %q", e.ID, e.Station)
		}
	case grid != "":
		if st = b.covering(grid); st == nil {
			bad("grid", "device %q: no micro fire station covers grid %s; name one with station: or add the grid to a station", e.ID, grid)
		}
	}
	if rules == nil && e.Rules != "" {
		if rules, err = parseRules(e.Rules); err != nil {
			bad("rules", "device %q: %v", e.ID, err)
		}
	}
	gw := e.Gateway
	if gw != "" {
		if g, ok := l.gatewayID[gw]; ok {
			gw = g
		} else {
			gw = strings.Clone(gw)
			l.gatewayID[gw] = gw
		}
	}
	d := Device{
		ID: b.text.str(e.ID), Kind: kind, Model: b.intern(e.Model), Grid: Grid(b.intern(string(grid))),
		Address: b.text.str(e.Address), Lat: e.Lat, Lon: e.Lon, Unit: b.intern(e.Unit), Station: st, Gateway: gw,
		Heartbeat: e.Heartbeat, SecretHash: b.text.str(e.SecretHash), NBIoT: b.nbiot(e.NBIoT), Phone: b.intern(e.Phone),
		Contact:  b.intern(e.Contact),
		Channels: uint8(min(max(e.Channels, 0), MaxChannels)), Rules: rules, Line: e.Line,
	}
	if e.Station != "" {
		d.flags |= stationNamed
	}
	return d
}

// nbiot returns the binding of an entry, its strings in the arena.
func (b *builder) nbiot(n NBIoT) *NBIoT {
	if n == (NBIoT{}) {
		return nil
	}
	return &NBIoT{IMEI: b.text.str(n.IMEI), PlatformID: b.text.str(n.PlatformID), Serial: b.text.str(n.Serial),
		Product: b.intern(n.Product), Responsible: b.intern(n.Responsible), Mobile: b.text.str(n.Mobile)}
}

// Entries returns the registry as plain data: Build(l.Entries()) makes
// the same registry (tombstones left out). The entries share nothing with
// l.
func (l *Ledger) Entries() *Entries {
	e := &Entries{Places: maps.Clone(l.Places)}
	if e.Places == nil {
		e.Places = map[string]string{}
	}
	for _, s := range l.Stations {
		e.Stations = append(e.Stations, StationEntry{ID: s.ID, Name: s.Name, Grids: slices.Clone(s.Grids), Endpoint: s.Endpoint, Lat: s.Lat, Lon: s.Lon})
	}
	for _, id := range slices.Sorted(maps.Keys(l.Gateways)) {
		g := l.Gateways[id]
		e.Gateways = append(e.Gateways, GatewayEntry{ID: g.ID, SecretHash: g.SecretHash, Line: g.Line})
	}
	e.Devices = make([]DeviceEntry, 0, len(l.Devices))
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.Removed {
			continue
		}
		e.Devices = append(e.Devices, d.entry())
	}
	if l.uitds != nil {
		e.UITDs = slices.Clone(l.uitds.entries)
	}
	return e
}

// entry returns d as entered.
func (d *Device) entry() DeviceEntry {
	de := DeviceEntry{ID: d.ID, Kind: d.Kind.String(), Model: d.Model, Grid: string(d.Grid), Address: d.Address,
		Lat: d.Lat, Lon: d.Lon, Unit: d.Unit, Phone: d.Phone, Contact: d.Contact, Gateway: d.Gateway, Channels: int(d.Channels),
		Heartbeat: d.Heartbeat, SecretHash: d.SecretHash, Line: d.Line}
	if d.flags&hbDerived != 0 {
		de.Heartbeat = 0
	}
	if d.Station != nil && d.flags&stationNamed != 0 {
		de.Station = d.Station.ID
	}
	if d.NBIoT != nil {
		de.NBIoT = *d.NBIoT
	}
	de.Rules, _ = rulesText(d.Rules) // nodes that came from YAML marshal back
	return de
}
