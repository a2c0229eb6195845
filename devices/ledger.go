package devices

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/internal/yamlfile"
	"gopkg.in/yaml.v3"
)

// ErrUnknownDevice is returned for a device id that is not in the ledger.
var ErrUnknownDevice = errors.New("unknown device")

// Index is the interned handle of a device: its position in Ledger.Devices.
type Index uint32

// Device is one entry of the ledger (台账).
type Device struct {
	Index   Index
	ID      string
	Kind    Kind
	Model   string
	Grid    Grid
	Address string
	Lat     float64
	Lon     float64
	// Unit is the owning unit (责任单位) responsible for the device.
	Unit string
	// Phone is the responsible person's phone (责任人电话), for responders.
	Phone string
	// Station is the covering micro fire station: the one named in the
	// ledger entry, or else the station whose coverage is the longest prefix
	// of the device's grid.
	Station *Station
	// Gateway is the gateway box that forwards for the device, if any.
	Gateway string
	// Channels caps the channels of channelled metrics (cable sensors,
	// charging slots) the device has; 0 means the catalog's maximum.
	Channels uint8
	// Rules holds the device's own rule overrides as installers set them on
	// site (rule id → {above: …, clear: …, for: …} or {off: true}); the
	// rules package reads them.
	Rules map[string]yaml.Node
	// Line is the device's line in the ledger file.
	Line int
	// Heartbeat overrides the heartbeat interval of the device's kind for
	// liveness (zero: the kind's); offline after devices.DefaultMissed.
	Heartbeat time.Duration
	// SecretHash is the device's MQTT password hash for the embedded
	// broker (`firewatch hash-secret`); empty: the device cannot connect
	// itself (it may still be forwarded by its gateway).
	SecretHash string
	NBIoT      *NBIoT // NB-IoT platform binding (nbiot.go); nil: none
	// Point names the building fire facility point a UITD reports the device as (uitd.go), e.g.
	// "柳石家园 消防控制室 火灾报警系统1 点型光电感烟火灾探测器 0x00000105"; empty for other devices.
	Point string
}

// Gateway is a gateway box (firegate) that forwards the readings of the
// devices whose ledger entry names it.
type Gateway struct {
	ID string
	// SecretHash is the gateway's MQTT password hash.
	SecretHash string
	Line       int
}

// Station is a micro fire station (微型消防站): a responder, not a sensor.
type Station struct {
	ID   string
	Name string
	// Grids are the code prefixes (6, 9 or 12 digits) the station covers.
	Grids []string
	// Endpoint is the dispatch webhook (联勤联调) that receives its pushes.
	Endpoint string
	Lat, Lon float64
}

// Ledger is the loaded device and station ledger. It is read-only after load
// and safe for concurrent use.
type Ledger struct {
	// File is the name the ledger was loaded from, for messages.
	File     string
	Devices  []Device
	Stations []*Station
	// Places names administrative codes (any prefix length), e.g.
	// "450204" → "柳州市柳南区", for dispatcher texts.
	Places map[string]string

	// Gateways are the gateway boxes, by id.
	Gateways map[string]*Gateway

	byID map[string]Index // while loading; idx afterwards
	idx  *idIndex
	// gatewayID holds one copy of each gateway id that devices name, shared
	// by their Device.Gateway fields (GatewayID).
	gatewayID map[string]string
	stationID map[string]*Station
	uitds     *uitdTable // GB/T 26875.3 UITDs (uitd.go)
}

// Lookup returns the device with the given id. It does not allocate.
func (l *Ledger) Lookup(id []byte) (*Device, bool) {
	if l.idx == nil {
		return nil, false
	}
	i, ok := l.idx.lookup(id)
	if !ok {
		return nil, false
	}
	return &l.Devices[i], true
}

// LookupID is Lookup for a string, such as a slice of an MQTT topic.
func (l *Ledger) LookupID(id string) (*Device, bool) {
	if l.idx == nil {
		return nil, false
	}
	i, ok := l.idx.lookupString(id)
	if !ok {
		return nil, false
	}
	return &l.Devices[i], true
}

// GatewayID returns the ledger's own copy of gateway id, the string its
// devices' Gateway fields share, or id itself when no device names it.
// Comparing a Device.Gateway with it compares pointers, not bytes, in the
// common case: the hot path checks every reading of a gateway batch.
func (l *Ledger) GatewayID(id string) string {
	if g, ok := l.gatewayID[id]; ok {
		return g
	}
	return id
}

// Device returns the device with index i.
func (l *Ledger) Device(i Index) *Device { return &l.Devices[i] }

// Station returns the station with the given id, or nil.
func (l *Ledger) Station(id string) *Station { return l.stationID[id] }

// PlaceName returns the names of g's county, town and village joined, using
// the names the ledger knows, falling back to the codes.
func (l *Ledger) PlaceName(g Grid) string {
	var parts []string
	for _, p := range []string{string(g[:6]), string(g[:9]), string(g)} {
		if n, ok := l.Places[p]; ok {
			parts = append(parts, n)
		}
	}
	if len(parts) == 0 {
		return string(g)
	}
	return strings.Join(parts, "")
}

// Problem is one mistake found while loading a file.
type Problem struct {
	File   string
	Line   int
	Reason string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason) }

// LoadError lists every problem found in a file, so that an installer can fix
// a ledger in one pass.
type LoadError struct{ Problems []Problem }

func (e *LoadError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

type ledgerFile struct {
	Places   map[string]string `yaml:"places"`
	Stations []yaml.Node       `yaml:"stations"`
	Devices  []yaml.Node       `yaml:"devices"`
	Gateways []yaml.Node       `yaml:"gateways"`
	UITDs    []yaml.Node       `yaml:"uitds"` // uitd.go
}

type gatewayEntry struct {
	ID         string `yaml:"id"`
	SecretHash string `yaml:"secret_hash"`
}

type stationEntry struct {
	ID       string   `yaml:"id"`
	Name     string   `yaml:"name"`
	Grids    []string `yaml:"grids"`
	Endpoint string   `yaml:"endpoint"`
	Lat      float64  `yaml:"lat"`
	Lon      float64  `yaml:"lon"`
}

type deviceEntry struct {
	ID      string  `yaml:"id"`
	Kind    string  `yaml:"kind"`
	Model   string  `yaml:"model"`
	Grid    string  `yaml:"grid"`
	Address string  `yaml:"address"`
	Lat     float64 `yaml:"lat"`
	Lon     float64 `yaml:"lon"`
	Unit    string  `yaml:"unit"`
	Phone   string  `yaml:"phone"`
	Station string  `yaml:"station"`
	Gateway string  `yaml:"gateway"`
	// Channels and Rules see Device.
	Channels int                  `yaml:"channels"`
	Rules    map[string]yaml.Node `yaml:"rules"`
	// Heartbeat is a duration such as 30m; SecretHash see Device.
	Heartbeat  time.Duration `yaml:"heartbeat"`
	SecretHash string        `yaml:"secret_hash"`
	NBIoT      NBIoT         `yaml:"nbiot"` // nbiot.go
}

// LoadLedger reads a ledger file.
func LoadLedger(path string) (*Ledger, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load ledger: %w", err)
	}
	return ParseLedger(path, b)
}

// ParseLedger parses a ledger from b; name is used in error messages. Every
// problem is reported with its line, as a *LoadError.
func ParseLedger(name string, b []byte) (*Ledger, error) {
	var f ledgerFile
	if err := yamlfile.Decode(b, &f); err != nil {
		return nil, &LoadError{Problems: []Problem{{File: name, Line: yamlfile.Line(err), Reason: yamlfile.Reason(err)}}}
	}
	p := &ledgerParser{name: name, l: &Ledger{
		File:      name,
		Places:    map[string]string{},
		byID:      make(map[string]Index, len(f.Devices)),
		stationID: make(map[string]*Station, len(f.Stations)),
		Gateways:  make(map[string]*Gateway, len(f.Gateways)),
	}}
	// Gateways and stations first: devices name them.
	p.gateways(f.Gateways)
	p.places(f.Places)
	p.stations(f.Stations)
	p.devices(f.Devices)
	p.probs = append(p.probs, p.l.parseUITDs(name, f.UITDs)...) // uitd.go
	if len(p.probs) > 0 {
		slices.SortStableFunc(p.probs, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &LoadError{Problems: p.probs}
	}
	p.l.index()
	return p.l, nil
}

// ledgerParser builds a Ledger from a ledger file's entries, collecting
// every problem rather than stopping at the first.
type ledgerParser struct {
	name  string
	l     *Ledger
	probs []Problem
}

func (p *ledgerParser) bad(line int, format string, args ...any) {
	p.probs = append(p.probs, Problem{File: p.name, Line: line, Reason: fmt.Sprintf(format, args...)})
}

func (p *ledgerParser) gateways(ns []yaml.Node) {
	l := p.l
	for i := range ns {
		n := &ns[i]
		var e gatewayEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			p.bad(n.Line, "gateway: %v", err)
			continue
		}
		if err := checkID(e.ID); err != nil {
			p.bad(n.Line, "gateway: %v", err)
			continue
		}
		if l.Gateways[e.ID] != nil {
			p.bad(n.Line, "gateway %q: duplicate id", e.ID)
			continue
		}
		l.Gateways[e.ID] = &Gateway{ID: e.ID, SecretHash: e.SecretHash, Line: n.Line}
	}
}

func (p *ledgerParser) places(places map[string]string) {
	for code, n := range places {
		if _, err := ParsePrefix(code); err != nil {
			p.bad(1, "places: %v", err)
			continue
		}
		p.l.Places[code] = n
	}
}

func (p *ledgerParser) stations(ns []yaml.Node) {
	l := p.l
	for i := range ns {
		n := &ns[i]
		var e stationEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			p.bad(n.Line, "station: %v", err)
			continue
		}
		if err := checkID(e.ID); err != nil {
			p.bad(n.Line, "station: %v", err)
			continue
		}
		if l.stationID[e.ID] != nil {
			p.bad(n.Line, "station %q: duplicate id", e.ID)
			continue
		}
		if e.Name == "" {
			p.bad(n.Line, "station %q: name is missing", e.ID)
		}
		if len(e.Grids) == 0 {
			p.bad(n.Line, "station %q: grids is empty: list the code prefixes it covers", e.ID)
		}
		for _, g := range e.Grids {
			if _, err := ParsePrefix(g); err != nil {
				p.bad(n.Line, "station %q: %v", e.ID, err)
			}
		}
		if !strings.HasPrefix(e.Endpoint, "http://") && !strings.HasPrefix(e.Endpoint, "https://") {
			p.bad(n.Line, "station %q: endpoint %q is not an http(s) URL", e.ID, e.Endpoint)
		}
		s := &Station{ID: e.ID, Name: e.Name, Grids: e.Grids, Endpoint: e.Endpoint, Lat: e.Lat, Lon: e.Lon}
		l.Stations = append(l.Stations, s)
		l.stationID[e.ID] = s
	}
}

func (p *ledgerParser) devices(ns []yaml.Node) {
	l := p.l
	l.Devices = make([]Device, 0, len(ns))
	for i := range ns {
		n := &ns[i]
		var e deviceEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			p.bad(n.Line, "device: %v", err)
			continue
		}
		if err := checkID(e.ID); err != nil {
			p.bad(n.Line, "device: %v", err)
			continue
		}
		if _, dup := l.byID[e.ID]; dup {
			p.bad(n.Line, "device %q: duplicate id", e.ID)
			continue
		}
		d := p.device(n, &e)
		l.byID[e.ID] = d.Index
		l.Devices = append(l.Devices, d)
	}
}

// device checks one device entry of node n, reporting every problem, and
// returns the device it describes.
func (p *ledgerParser) device(n *yaml.Node, e *deviceEntry) Device {
	l, bad := p.l, p.bad
	kind, err := ParseKind(e.Kind)
	if err != nil {
		bad(n.Line, "device %q: %v", e.ID, err)
	}
	grid, err := ParseGrid(e.Grid)
	if err != nil {
		bad(n.Line, "device %q: %v", e.ID, err)
	}
	if e.Lat < -90 || e.Lat > 90 || e.Lon < -180 || e.Lon > 180 {
		bad(n.Line, "device %q: coordinates %g,%g out of range", e.ID, e.Lat, e.Lon)
	}
	if e.Gateway != "" {
		if err := checkID(e.Gateway); err != nil {
			bad(n.Line, "device %q: gateway: %v", e.ID, err)
		}
	}
	if e.Heartbeat < 0 {
		bad(n.Line, "device %q: heartbeat %v is negative", e.ID, e.Heartbeat)
	}
	if e.Channels < 0 || e.Channels > MaxChannels {
		bad(n.Line, "device %q: channels %d is outside 0…%d", e.ID, e.Channels, MaxChannels)
	}
	if msg := e.NBIoT.check(); msg != "" { // nbiot.go
		bad(n.Line, "device %q: %s", e.ID, msg)
	}
	var st *Station
	switch {
	case e.Station != "":
		if st = l.stationID[e.Station]; st == nil {
			bad(n.Line, "device %q: unknown station %q", e.ID, e.Station)
		}
	case grid != "":
		if st = l.covering(grid); st == nil {
			bad(n.Line, "device %q: no micro fire station covers grid %s; name one with station: or add the grid to a station", e.ID, grid)
		}
	}
	// Take the override nodes from the file's own tree: those decoded
	// above carry lines of a re-encoded copy.
	if rn := mappingValue(n, "rules"); rn != nil && rn.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(rn.Content); i += 2 {
			e.Rules[rn.Content[i].Value] = *rn.Content[i+1]
		}
	}
	return Device{
		Index: Index(len(l.Devices)), ID: e.ID, Kind: kind, Model: e.Model, Grid: grid,
		Address: e.Address, Lat: e.Lat, Lon: e.Lon, Unit: e.Unit, Station: st, Gateway: e.Gateway,
		Heartbeat: e.Heartbeat, SecretHash: e.SecretHash, NBIoT: e.NBIoT.bound(), Phone: e.Phone,
		Channels: uint8(min(max(e.Channels, 0), MaxChannels)), Rules: e.Rules, Line: n.Line,
	}
}

// index builds the device id index of a ledger without problems, and
// interns each gateway id so that its devices share one string.
func (l *Ledger) index() {
	ids := make([]string, len(l.Devices))
	l.gatewayID = map[string]string{}
	for i := range l.Devices {
		d := &l.Devices[i]
		ids[i] = d.ID
		if d.Gateway != "" {
			if g, ok := l.gatewayID[d.Gateway]; ok {
				d.Gateway = g
			} else {
				l.gatewayID[d.Gateway] = d.Gateway
			}
		}
	}
	l.idx, l.byID = newIDIndex(ids), nil
}

// mappingValue returns the value of key in a YAML mapping node, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// covering returns the station whose coverage is the longest prefix of g.
func (l *Ledger) covering(g Grid) *Station {
	var best *Station
	bestLen := 0
	for _, s := range l.Stations {
		for _, p := range s.Grids {
			if len(p) > bestLen && g.Within(p) {
				best, bestLen = s, len(p)
			}
		}
	}
	return best
}

// checkID accepts ids that are safe in MQTT topics, InfluxDB tags and URLs.
func checkID(id string) error {
	if id == "" {
		return errors.New("id is missing")
	}
	if len(id) > 64 {
		return fmt.Errorf("id %q is longer than 64 bytes", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("id %q has %q: use letters, digits, '-', '_' and '.'", id, c)
		}
	}
	return nil
}

// CheckID reports whether id is a valid device, station or gateway id.
func CheckID(id string) error { return checkID(id) }
