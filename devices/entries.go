package devices

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/internal/yamlfile"
	"gopkg.in/yaml.v3"
)

// Entries is the registry as plain data: the import and export form of the
// YAML ledger, of the registry store and of spreadsheets. Build turns it
// into a Ledger, checking every entry; Ledger.Entries gives it back.
type Entries struct {
	// Places names administrative code prefixes (any length), e.g.
	// "450204" → "柳州市柳南区".
	Places   map[string]string
	Stations []StationEntry
	Gateways []GatewayEntry
	Devices  []DeviceEntry
	// UITDs is the `uitds:` section (GB/T 26875.3 user information
	// transmission devices, uitd.go).
	UITDs []UITDEntry
}

// StationEntry is a micro fire station (微型消防站) as entered; see Station.
type StationEntry struct {
	ID       string   `yaml:"id"`
	Name     string   `yaml:"name"`
	Grids    []string `yaml:"grids,omitempty"`
	Endpoint string   `yaml:"endpoint"`
	Lat      float64  `yaml:"lat,omitempty"`
	Lon      float64  `yaml:"lon,omitempty"`
	Line     int      `yaml:"-"` // YAML line (0 when not from a file)
}

// GatewayEntry is a gateway box as entered; see Gateway.
type GatewayEntry struct {
	ID         string `yaml:"id"`
	SecretHash string `yaml:"secret_hash,omitempty"`
	Line       int    `yaml:"-"`
}

// DeviceEntry is a device as entered; see Device for the meaning of each
// field. Kind and Grid are text as the user wrote them: Build checks them.
type DeviceEntry struct {
	ID      string
	Kind    string
	Model   string
	Grid    string
	Address string
	Lat     float64
	Lon     float64
	Unit    string
	Phone   string
	Contact string
	Station string
	Gateway string
	// Channels caps the channelled metrics (0: the catalog's maximum).
	Channels int
	// Rules is the per-device rule overrides as YAML text of a mapping
	// (rule id → {above: …} or {off: true}), "" for none.
	Rules     string
	Heartbeat time.Duration
	// SecretHash is the device's MQTT password hash (never the secret).
	SecretHash string
	NBIoT      NBIoT
	// Line is the entry's line in the YAML ledger (0 when not from a file).
	Line int
}

// UITDEntry is a GB/T 26875.3 UITD as entered (the `uitds:` section); see UITD.
type UITDEntry struct {
	// Address is the 6 address bytes in wire order, as 12 hex digits.
	Address string `yaml:"address"`
	// Device is the UITD's own ledger device (kind facility).
	Device   string        `yaml:"device"`
	Patrol   time.Duration `yaml:"patrol,omitempty"`
	Networks []string      `yaml:"networks,omitempty"`
	Points   []PointEntry  `yaml:"points,omitempty"`
	Line     int           `yaml:"-"`
}

// PointEntry lists one point of a UITD's controller as a ledger device: a
// system (type and address) or, with Addr, one of its components.
type PointEntry struct {
	System     *int    `yaml:"system"`
	SystemAddr *int    `yaml:"system_addr"`
	Addr       *uint32 `yaml:"addr,omitempty"`
	// Type is the component type (Table 5), for the dispatcher's text only.
	Type   *int   `yaml:"type,omitempty"`
	Device string `yaml:"device"`
}

// deviceYAML is a device entry as the YAML ledger writes it.
type deviceYAML struct {
	ID         string        `yaml:"id"`
	Kind       string        `yaml:"kind"`
	Model      string        `yaml:"model,omitempty"`
	Grid       string        `yaml:"grid"`
	Address    string        `yaml:"address,omitempty"`
	Lat        float64       `yaml:"lat,omitempty"`
	Lon        float64       `yaml:"lon,omitempty"`
	Unit       string        `yaml:"unit,omitempty"`
	Phone      string        `yaml:"phone,omitempty"`
	Contact    string        `yaml:"contact,omitempty"`
	Station    string        `yaml:"station,omitempty"`
	Gateway    string        `yaml:"gateway,omitempty"`
	Channels   int           `yaml:"channels,omitempty"`
	Rules      *yaml.Node    `yaml:"rules,omitempty"`
	Heartbeat  time.Duration `yaml:"heartbeat,omitempty"`
	SecretHash string        `yaml:"secret_hash,omitempty"`
	NBIoT      *NBIoT        `yaml:"nbiot,omitempty"`
}

// deviceKeys are the keys of a device entry, for the strict check.
var deviceKeys = []string{"id", "kind", "model", "grid", "address", "lat", "lon", "unit", "phone", "contact", "station",
	"gateway", "channels", "rules", "heartbeat", "secret_hash", "nbiot"}

var nbiotKeys = []string{"imei", "platform_id", "serial", "product", "responsible", "mobile"}

type ledgerFile struct {
	Places   map[string]string `yaml:"places"`
	Stations []yaml.Node       `yaml:"stations"`
	Devices  []yaml.Node       `yaml:"devices"`
	Gateways []yaml.Node       `yaml:"gateways"`
	UITDs    []yaml.Node       `yaml:"uitds"` // uitd.go
}

// parsed is a YAML ledger read into Entries, with the problems of entries
// that could not be read at all (they are left out) and each device's
// override nodes from the file's own tree, whose lines the rules engine
// reports.
type parsed struct {
	e     *Entries
	probs []Problem
	rules map[int]map[string]yaml.Node // by position in e.Devices
	// pos maps positions in e's sections to positions in the file's
	// (entries that could not be read are left out of e).
	pos map[string][]int
}

// deviceSink takes a ledger's devices in file order as they are read:
// ParseLedger builds each at once, so that a million DeviceEntry values
// never exist together (issue 18).
type deviceSink interface {
	// head takes the sections devices name (places, stations, gateways),
	// before the first device, and how many device items there are. It is
	// called again when a read in batches gives up and the file is read
	// whole: the sink starts afresh.
	head(e *Entries, devices int)
	// device takes the device at position pos of the file's list, with its
	// override nodes from the file's own tree.
	device(pos int, e *DeviceEntry, rules map[string]yaml.Node)
}

// at is the position in the file of entry i of section.
func (p *parsed) at(section string, i int) int {
	if ps := p.pos[section]; i >= 0 && i < len(ps) {
		return ps[i]
	}
	return i
}

// add takes the device at position pos of the file: to the sink, or into
// the entries.
func (p *parsed) add(sink deviceSink, pos int, e *DeviceEntry, rules map[string]yaml.Node) {
	if sink != nil {
		sink.device(pos, e, rules)
		return
	}
	if rules != nil {
		if p.rules == nil {
			p.rules = map[int]map[string]yaml.Node{}
		}
		p.rules[len(p.e.Devices)] = rules
	}
	p.kept("devices", pos)
	p.e.Devices = append(p.e.Devices, *e)
}

func (p *parsed) kept(section string, i int) {
	if p.pos == nil {
		p.pos = map[string][]int{}
	}
	p.pos[section] = append(p.pos[section], i)
}

// ParseEntries reads a YAML ledger into Entries, for import. It checks the
// form of each entry (known keys, types) but not the registry's rules:
// Build does. Problems come back as a *LoadError with lines.
func ParseEntries(name string, b []byte) (*Entries, error) {
	p, err := parseEntries(name, b, nil)
	if err != nil {
		return nil, err
	}
	if len(p.probs) > 0 {
		return nil, &LoadError{Problems: p.probs}
	}
	return p.e, nil
}

// parseEntries reads a ledger; with a sink its devices go to the sink, not
// into the entries.
func parseEntries(name string, b []byte, sink deviceSink) (*parsed, error) {
	p, ok := (*parsed)(nil), false
	if len(b) >= chunkedFrom {
		p, ok = parseChunked(name, b, sink) // entries_chunked.go
	}
	if !ok {
		var err error
		if p, err = parseWhole(name, b, sink); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(p.probs, func(a, b Problem) int { return a.Line - b.Line })
	return p, nil
}

// parseWhole reads a ledger as one YAML document.
func parseWhole(name string, b []byte, sink deviceSink) (*parsed, error) {
	var f ledgerFile
	if err := yamlfile.Decode(b, &f); err != nil {
		return nil, &LoadError{Problems: []Problem{{File: name, Line: yamlfile.Line(err), Reason: yamlfile.Reason(err), Index: -1}}}
	}
	p := &parsed{e: &Entries{Places: f.Places}}
	if p.e.Places == nil {
		p.e.Places = map[string]string{}
	}
	bad := func(section string, i int, n *yaml.Node, what string, err error) {
		p.probs = append(p.probs, Problem{File: name, Line: n.Line, Reason: what + ": " + yamlfile.Reason(err),
			Section: section, Index: i, ID: scalarValue(n, "id")})
	}
	for i := range f.Gateways {
		n := &f.Gateways[i]
		var e GatewayEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			bad("gateways", i, n, "gateway", err)
			continue
		}
		e.Line = n.Line
		p.kept("gateways", i)
		p.e.Gateways = append(p.e.Gateways, e)
	}
	for i := range f.Stations {
		n := &f.Stations[i]
		var e StationEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			bad("stations", i, n, "station", err)
			continue
		}
		e.Line = n.Line
		// `grids: []` is written back as no key: both read as none.
		e.Grids = nilIfEmpty(e.Grids)
		p.kept("stations", i)
		p.e.Stations = append(p.e.Stations, e)
	}
	if sink != nil {
		sink.head(p.e, len(f.Devices))
	} else {
		p.e.Devices = make([]DeviceEntry, 0, len(f.Devices))
	}
	for i := range f.Devices {
		n := &f.Devices[i]
		line := n.Line
		e, rules, err := decodeDevice(n)
		// The file's tree is not needed once read: let the collector
		// take it while the rest is read (a large ledger's nodes weigh
		// far more than its devices).
		f.Devices[i] = yaml.Node{}
		if err != nil {
			p.probs = append(p.probs, Problem{File: name, Line: line, Reason: "device: " + yamlfile.Reason(err),
				Section: "devices", Index: i, ID: e.ID})
			continue
		}
		p.add(sink, i, &e, rules)
	}
	for i := range f.UITDs {
		n := &f.UITDs[i]
		var e UITDEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			p.probs = append(p.probs, Problem{File: name, Line: n.Line, Reason: "uitd: " + yamlfile.Reason(err), Section: "uitds", Index: i})
			continue
		}
		e.Line = n.Line
		e.Networks = nilIfEmpty(e.Networks)
		e.Points = nilIfEmpty(e.Points)
		p.kept("uitds", i)
		p.e.UITDs = append(p.e.UITDs, e)
	}
	return p, nil
}

// nilIfEmpty makes an empty list none, as MarshalEntries writes it (the
// `omitempty` lists), so an entry reads the same after a round trip.
func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// decodeDevice reads one device entry. It checks the keys itself and
// decodes the node directly: yamlfile.DecodeNode re-encodes each node to
// have yaml.v3 reject unknown keys, which for a ledger of a million devices
// is most of the start-up.
func decodeDevice(n *yaml.Node) (DeviceEntry, map[string]yaml.Node, error) {
	var e DeviceEntry
	if n.Kind == yaml.MappingNode {
		e.ID = scalarValue(n, "id")
		if err := knownKeys(n, deviceKeys); err != nil {
			return e, nil, err
		}
		if nb := mappingValue(n, "nbiot"); nb != nil && nb.Kind == yaml.MappingNode {
			if err := knownKeys(nb, nbiotKeys); err != nil {
				return e, nil, err
			}
		}
	}
	var y struct {
		ID         string        `yaml:"id"`
		Kind       string        `yaml:"kind"`
		Model      string        `yaml:"model"`
		Grid       string        `yaml:"grid"`
		Address    string        `yaml:"address"`
		Lat        float64       `yaml:"lat"`
		Lon        float64       `yaml:"lon"`
		Unit       string        `yaml:"unit"`
		Phone      string        `yaml:"phone"`
		Contact    string        `yaml:"contact"`
		Station    string        `yaml:"station"`
		Gateway    string        `yaml:"gateway"`
		Channels   int           `yaml:"channels"`
		Rules      yaml.Node     `yaml:"rules"`
		Heartbeat  time.Duration `yaml:"heartbeat"`
		SecretHash string        `yaml:"secret_hash"`
		NBIoT      NBIoT         `yaml:"nbiot"`
	}
	if err := n.Decode(&y); err != nil {
		return e, nil, err
	}
	e = DeviceEntry{ID: y.ID, Kind: y.Kind, Model: y.Model, Grid: y.Grid, Address: y.Address, Lat: y.Lat, Lon: y.Lon,
		Unit: y.Unit, Phone: y.Phone, Contact: y.Contact, Station: y.Station, Gateway: y.Gateway, Channels: y.Channels,
		Heartbeat: y.Heartbeat, SecretHash: y.SecretHash, NBIoT: y.NBIoT, Line: n.Line}
	rn := mappingValue(n, "rules")
	if rn == nil || rn.Kind == yaml.ScalarNode && rn.Tag == "!!null" {
		return e, nil, nil
	}
	if rn.Kind != yaml.MappingNode {
		return e, nil, fmt.Errorf("line %d: rules must be a mapping of rule id to override", rn.Line)
	}
	rules := make(map[string]yaml.Node, len(rn.Content)/2)
	for i := 0; i+1 < len(rn.Content); i += 2 {
		rules[rn.Content[i].Value] = *rn.Content[i+1]
	}
	text, err := rulesText(rules)
	if err != nil {
		return e, nil, err
	}
	e.Rules = text
	return e, rules, nil
}

// knownKeys rejects a key of mapping n that is not in keys, as yaml.v3's
// KnownFields does.
func knownKeys(n *yaml.Node, keys []string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(keys, k.Value) {
			return fmt.Errorf("line %d: field %s not found", k.Line, k.Value)
		}
	}
	return nil
}

// scalarValue returns the text of key's scalar value in mapping n, or "".
func scalarValue(n *yaml.Node, key string) string {
	if v := mappingValue(n, key); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// rulesText writes overrides as the YAML text of a mapping, keys in order.
func rulesText(rules map[string]yaml.Node) (string, error) {
	if len(rules) == 0 {
		return "", nil
	}
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, id := range sortedRuleIDs(rules) {
		v := rules[id]
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: id}, &v)
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func sortedRuleIDs(rules map[string]yaml.Node) []string {
	ids := make([]string, 0, len(rules))
	for id := range rules {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// parseRules reads a DeviceEntry's Rules text into override nodes.
func parseRules(text string) (map[string]yaml.Node, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		return nil, fmt.Errorf("rules: %s", yamlfile.Reason(err))
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = *n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("rules must be a mapping of rule id to override")
	}
	rules := make(map[string]yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("rules: a rule id must be text")
		}
		if _, dup := rules[k.Value]; dup {
			return nil, fmt.Errorf("rules: rule %q overridden twice", k.Value)
		}
		rules[k.Value] = *n.Content[i+1]
	}
	return rules, nil
}

// MarshalEntries writes e as a YAML ledger that ParseEntries reads back to
// the same entries (lines aside).
func MarshalEntries(e *Entries) ([]byte, error) {
	type file struct {
		Places   map[string]string `yaml:"places,omitempty"`
		Stations []StationEntry    `yaml:"stations,omitempty"`
		Gateways []GatewayEntry    `yaml:"gateways,omitempty"`
		Devices  []deviceYAML      `yaml:"devices,omitempty"`
		UITDs    []UITDEntry       `yaml:"uitds,omitempty"`
	}
	f := file{Places: e.Places, Stations: e.Stations, Gateways: e.Gateways, UITDs: e.UITDs}
	f.Devices = make([]deviceYAML, len(e.Devices))
	for i := range e.Devices {
		d := &e.Devices[i]
		y := deviceYAML{ID: d.ID, Kind: d.Kind, Model: d.Model, Grid: d.Grid, Address: d.Address, Lat: d.Lat, Lon: d.Lon,
			Unit: d.Unit, Phone: d.Phone, Contact: d.Contact, Station: d.Station, Gateway: d.Gateway, Channels: d.Channels,
			Heartbeat: d.Heartbeat, SecretHash: d.SecretHash}
		if d.NBIoT != (NBIoT{}) {
			nb := d.NBIoT
			y.NBIoT = &nb
		}
		if strings.TrimSpace(d.Rules) != "" {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(d.Rules), &n); err != nil {
				return nil, fmt.Errorf("device %q: rules: %s", d.ID, yamlfile.Reason(err))
			}
			if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
				y.Rules = n.Content[0]
			}
		}
		f.Devices[i] = y
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
