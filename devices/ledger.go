package devices

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrUnknownDevice is returned for a device id that is not in the ledger.
var ErrUnknownDevice = errors.New("unknown device")

// Index is the interned handle of a device: its position in Ledger.Devices.
type Index uint32

// Device is one entry of the ledger (台账).
//
// Its small fields come first, packed in one word (a million devices: 24 MB
// less than in declaration order of meaning; issue 18).
type Device struct {
	Index Index
	Kind  Kind
	// Channels caps the channels of channelled metrics (cable sensors,
	// charging slots) the device has; 0 means the catalog's maximum.
	Channels uint8
	// Removed marks a tombstone: the device was deleted from the registry
	// by a change (Ledger.Apply). Its slot keeps its Index so that arrays
	// indexed by Index stay valid; Lookup and LookupID no longer find it.
	Removed bool
	flags   deviceFlags
	ID      string
	Model   string
	Grid    Grid
	Address string
	Lat     float64
	Lon     float64
	// Unit is the owning unit (责任单位) responsible for the device.
	Unit string
	// Phone is the responsible person's phone (责任人电话), for responders.
	Phone string
	// Contact is the responsible person's name (责任人), for responders
	// (issue 18); interned like Unit.
	Contact string
	// Station is the covering micro fire station: the one named in the
	// ledger entry, or else the station whose coverage is the longest prefix
	// of the device's grid.
	Station *Station
	// Gateway is the gateway box that forwards for the device, if any.
	Gateway string
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

// deviceFlags say how a Device was entered, for Ledger.Entries.
type deviceFlags uint8

const (
	// hbDerived: Heartbeat was set from its UITD's patrol, not entered.
	hbDerived deviceFlags = 1 << iota
	// stationNamed: the entry named Station (else it covers the grid).
	stationNamed
)

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

	idx *idIndex
	// gatewayID holds one copy of each gateway id that devices name, shared
	// by their Device.Gateway fields (GatewayID).
	gatewayID map[string]string
	stationID map[string]*Station
	uitds     *uitdTable // GB/T 26875.3 UITDs (uitd.go)
	version   uint64     // Version
}

// Lookup returns the device with the given id. It does not allocate.
func (l *Ledger) Lookup(id []byte) (*Device, bool) {
	if l.idx == nil {
		return nil, false
	}
	i, ok := l.idx.lookup(id)
	if !ok || l.Devices[i].Removed {
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
	if !ok || l.Devices[i].Removed {
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

// HasGateway reports whether a device of l names gateway id (a gateway
// whose batches can carry readings).
func (l *Ledger) HasGateway(id string) bool {
	_, ok := l.gatewayID[id]
	return ok
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
	// Section, Index, ID and Field locate the problem for an API answer
	// or a spreadsheet row: the section of Entries or Change ("devices",
	// "stations", "gateways", "places", "uitds"), the position in that
	// slice (-1: none), the entry's id and the YAML key at fault ("grid",
	// "kind", "station", …; "" for the entry as a whole).
	Section string
	Index   int
	ID      string
	Field   string
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
	s := &ledgerSink{name: name}
	p, err := parseEntries(name, b, s)
	if err != nil {
		return nil, err
	}
	bl := s.b
	bl.tail(p.e.UITDs)
	for i := range bl.probs {
		if bl.probs[i].Section != "devices" { // devices come with their position in the file
			bl.probs[i].Index = p.at(bl.probs[i].Section, bl.probs[i].Index)
		}
	}
	probs := append(p.probs, bl.probs...)
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &LoadError{Problems: probs}
	}
	return bl.l, nil
}

// ledgerSink builds each device of a file as it is read.
type ledgerSink struct {
	name string
	b    *builder
}

func (s *ledgerSink) head(e *Entries, devices int) {
	s.b = newBuilder(s.name, devices)
	s.b.placesLine = 1
	s.b.head(e, devices)
}

func (s *ledgerSink) device(pos int, e *DeviceEntry, rules map[string]yaml.Node) {
	s.b.device(pos, e, rules)
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
