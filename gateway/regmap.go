package gateway

import (
	"embed"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/gateway/modbus"
	"github.com/firewatch-iot/firewatch/internal/yamlfile"
)

// DataType is how a point's value is laid out in registers or bits.
type DataType uint8

// Data types of a register map.
const (
	TypeInvalid DataType = iota
	TypeBool             // one coil or discrete input (functions 1, 2), or a register ≠ 0
	TypeInt16
	TypeUint16
	TypeInt32
	TypeUint32
	TypeFloat32 // IEEE 754 single in two registers
)

var typeNames = map[string]DataType{
	"bool": TypeBool, "int16": TypeInt16, "uint16": TypeUint16,
	"int32": TypeInt32, "uint32": TypeUint32, "float32": TypeFloat32,
}

func (t DataType) String() string {
	for n, v := range typeNames {
		if v == t {
			return n
		}
	}
	return "invalid"
}

// Words is how many 16-bit registers the type takes.
func (t DataType) Words() int {
	switch t {
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	}
	return 1
}

// Point is one value of a device model: where it is, how to decode it and
// which catalog metric (and channel) it becomes.
type Point struct {
	Metric   devices.Metric
	Ch       int // 0: unchannelled
	Function byte
	Address  uint16
	Type     DataType
	// LowWordFirst is the word order of 32-bit types: false (the default,
	// "big") is the high word in the lower register (ABCD); true ("little")
	// is CDAB, common on meters. Bytes within a register are big-endian.
	LowWordFirst bool
	Scale        float64
	Offset       float64
	// Sentinels are raw register values (the whole 16 or 32 bits, before
	// Mask) that mean "no value": a sensor not connected or out of order
	// (e.g. 0x7FFF). Decode returns NaN for them, as for a float32 NaN,
	// and the reading carries the metric as null.
	Sentinels []uint32
	// Mask keeps only these bits of an integer register before scaling
	// (an event in bit 0 of a status word); 0 keeps all.
	Mask uint32
	Line int
}

// Event reports whether the point is a catalog event.
func (p *Point) Event() bool { return p.Metric.Info().Event }

// Block is one read request that covers several points.
type Block struct {
	Function byte
	Address  uint16
	Count    uint16
	Points   []int // indexes into Map.Points
}

// Command is a write the downlink performs, e.g. cut_power.
type Command struct {
	Function byte   // 5 (coil) or 6 (register)
	Address  uint16 // of channel 1 (or of the device when unchannelled)
	Step     uint16 // address distance between channels
	Value    uint16 // register value; for a coil, ≠ 0 means on
	// DeviceAddress is written when the command names no channel (the
	// whole device); it defaults to Address.
	DeviceAddress uint16
	// Channels is the highest channel a command may name: the map's
	// highest channel. Without Step the model has one output for all of
	// them (a monitor's single trip relay), written for any channel.
	Channels int
	// NoReadback turns off reading the output back after the write (for
	// a device that cannot read its coils); the ack then has no state.
	NoReadback bool
	Line       int
}

// ReadbackFunction is the function that reads the command's output back:
// read coils after a coil write, read holding registers after a register
// write.
func (c Command) ReadbackFunction() byte {
	if c.Function == modbus.FuncWriteSingleCoil {
		return modbus.FuncReadCoils
	}
	return modbus.FuncReadHoldingRegisters
}

// Target returns the address a command for channel ch (0: the whole
// device) writes.
func (c Command) Target(ch int) (uint16, error) {
	if ch == 0 {
		return c.DeviceAddress, nil
	}
	if ch < 0 || ch > max(c.Channels, 1) {
		return 0, fmt.Errorf("ch %d outside the model's channels 1…%d", ch, max(c.Channels, 1))
	}
	if c.Step == 0 {
		return c.Address, nil // one output for every channel
	}
	a := int(c.Address) + (ch-1)*int(c.Step)
	if a > 0xFFFF {
		return 0, fmt.Errorf("ch %d is outside the model's address range", ch)
	}
	return uint16(a), nil
}

// Map is the register map of one device model.
type Map struct {
	Model    string
	Kind     devices.Kind
	File     string
	Points   []Point
	Blocks   []Block
	Commands map[string]Command
}

// Maps holds register maps by model.
type Maps map[string]*Map

//go:embed maps/*.yaml
var shipped embed.FS

// ShippedMaps returns the maps shipped with firegate (gateway/maps).
func ShippedMaps() (Maps, error) {
	ms := Maps{}
	err := yamlfile.EachIn(shipped, "maps", func(name string, b []byte) error {
		m, err := ParseMap(name, b)
		if err != nil {
			return err
		}
		ms[m.Model] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

// LoadMaps adds the maps in paths (files, or directories of *.yaml) to ms;
// a later map of the same model replaces an earlier one.
func (ms Maps) LoadMaps(paths []string) error {
	return yamlfile.Each(paths, "register map", func(name string, b []byte) error {
		m, err := ParseMap(name, b)
		if err != nil {
			return err
		}
		ms[m.Model] = m
		return nil
	})
}

type mapFile struct {
	Model       string               `yaml:"model"`
	Kind        string               `yaml:"kind"`
	Vendor      string               `yaml:"vendor"`
	Description string               `yaml:"description"`
	WordOrder   string               `yaml:"word_order"`
	Registers   []yaml.Node          `yaml:"registers"`
	Commands    map[string]yaml.Node `yaml:"commands"`
}

type pointEntry struct {
	Metric    string   `yaml:"metric"`
	Ch        int      `yaml:"ch"`
	Function  int      `yaml:"function"`
	Address   *int     `yaml:"address"`
	Type      string   `yaml:"type"`
	WordOrder string   `yaml:"word_order"`
	Scale     *float64 `yaml:"scale"`
	Offset    float64  `yaml:"offset"`
	Unit      string   `yaml:"unit"`
	Sentinel  []int64  `yaml:"sentinel"`
	Mask      *int64   `yaml:"mask"`
}

type commandEntry struct {
	Function int   `yaml:"function"`
	Address  *int  `yaml:"address"`
	Step     int   `yaml:"step"`
	Value    *int  `yaml:"value"`
	Device   *int  `yaml:"device_address"`
	Readback *bool `yaml:"readback"`
}

// Commands the downlink knows.
var knownCommands = []string{"cut_power", "restore_power"}

// ParseMap parses a register map; name is used in messages. Every problem
// is reported with its line, as a *devices.LoadError.
func ParseMap(name string, b []byte) (*Map, error) {
	var f mapFile
	if err := yamlfile.Decode(b, &f); err != nil {
		return nil, &devices.LoadError{Problems: []devices.Problem{{File: name, Line: yamlfile.Line(err), Reason: yamlfile.Reason(err)}}}
	}
	p := &mapParser{name: name, m: &Map{Model: f.Model, File: name, Commands: map[string]Command{}}, seen: map[slot]int{}}
	p.header(&f)
	for i := range f.Registers {
		if pt, ok := p.point(&f.Registers[i]); ok {
			p.m.Points = append(p.m.Points, pt)
		}
	}
	names := make([]string, 0, len(f.Commands))
	for k := range f.Commands {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		n := f.Commands[name]
		if c, ok := p.command(name, &n); ok {
			p.m.Commands[name] = c
		}
	}
	if len(p.probs) > 0 {
		slices.SortStableFunc(p.probs, func(a, b devices.Problem) int { return a.Line - b.Line })
		return nil, &devices.LoadError{Problems: p.probs}
	}
	m := p.m
	m.Blocks = blocks(m.Points, maxGap)
	chans := 1
	for _, p := range m.Points {
		chans = max(chans, p.Ch)
	}
	for name, c := range m.Commands {
		c.Channels = chans
		m.Commands[name] = c
	}
	return m, nil
}

// mapParser builds a Map from a register map file's entries, collecting
// every problem rather than stopping at the first.
type mapParser struct {
	name  string
	m     *Map
	probs []devices.Problem
	// lowFirst is the map's default word order.
	lowFirst bool
	// seen gives the line of each metric and channel already mapped.
	seen map[slot]int
}

type slot struct {
	metric devices.Metric
	ch     int
}

func (p *mapParser) bad(line int, format string, args ...any) {
	p.probs = append(p.probs, devices.Problem{File: p.name, Line: line, Reason: fmt.Sprintf(format, args...)})
}

// header checks the map's model, kind and default word order.
func (p *mapParser) header(f *mapFile) {
	if f.Model == "" {
		p.bad(1, "model is missing")
	}
	kind, err := devices.ParseKind(f.Kind)
	if err != nil {
		p.bad(1, "kind: %v", err)
	}
	p.m.Kind = kind
	if p.lowFirst, err = parseWordOrder(f.WordOrder, false); err != nil {
		p.bad(1, "%v", err)
	}
	if len(f.Registers) == 0 {
		p.bad(1, "registers is empty")
	}
}

// point checks one register entry, node n; ok is false when it names no
// metric of the catalog, so that nothing else can be checked.
func (p *mapParser) point(n *yaml.Node) (pt Point, ok bool) {
	bad := p.bad
	var e pointEntry
	if err := yamlfile.DecodeNode(n, &e); err != nil {
		bad(n.Line, "register: %v", err)
		return pt, false
	}
	pt = Point{Ch: e.Ch, Offset: e.Offset, Scale: 1, Line: n.Line}
	if e.Scale != nil {
		pt.Scale = *e.Scale
	}
	metric, problems, ok := devices.MapTarget(p.m.Kind, e.Metric, e.Unit, e.Ch)
	for _, msg := range problems {
		bad(n.Line, "%s", msg)
	}
	if !ok {
		return pt, false
	}
	pt.Metric = metric
	info := metric.Info()
	if prev, dup := p.seen[slot{metric, e.Ch}]; dup {
		bad(n.Line, "%s ch %d is already mapped at line %d", e.Metric, e.Ch, prev)
	}
	p.seen[slot{metric, e.Ch}] = n.Line
	pt.Function = byte(e.Function)
	if e.Function < 1 || e.Function > 4 {
		bad(n.Line, "%s: function %d: use 1 (coil), 2 (discrete input), 3 (holding register) or 4 (input register)", e.Metric, e.Function)
	}
	if e.Address == nil || *e.Address < 0 || *e.Address > 0xFFFF {
		bad(n.Line, "%s: address missing or outside 0…65535 (the protocol address, not 40001-style)", e.Metric)
	} else {
		pt.Address = uint16(*e.Address)
	}
	p.pointType(n, &e, &pt, info.Event)
	return pt, true
}

// pointType checks a register entry's type, word order, scale and the raw
// values it allows: sentinels and mask.
func (p *mapParser) pointType(n *yaml.Node, e *pointEntry, pt *Point, event bool) {
	bad := p.bad
	pt.Type = typeNames[e.Type]
	if e.Type == "" && pt.Function <= 2 {
		pt.Type = TypeBool
	}
	switch {
	case pt.Type == TypeInvalid:
		bad(n.Line, "%s: type %q: use bool, int16, uint16, int32, uint32 or float32", e.Metric, e.Type)
	case pt.Function <= 2 && pt.Type != TypeBool:
		bad(n.Line, "%s: function %d reads bits: type must be bool", e.Metric, e.Function)
	case event && pt.Type != TypeBool && pt.Type != TypeUint16:
		bad(n.Line, "%s is an event: type must be bool or uint16 (non-zero = active)", e.Metric)
	}
	var err error
	if pt.LowWordFirst, err = parseWordOrder(e.WordOrder, p.lowFirst); err != nil {
		bad(n.Line, "%s: %v", e.Metric, err)
	}
	if pt.Scale == 0 || math.IsNaN(pt.Scale) || math.IsInf(pt.Scale, 0) {
		bad(n.Line, "%s: scale must be a finite non-zero number", e.Metric)
	}
	if int(pt.Address)+pt.Type.Words() > 0x10000 {
		bad(n.Line, "%s: runs past address 65535", e.Metric)
	}
	limit := int64(0xFFFF)
	if pt.Type.Words() == 2 {
		limit = 0xFFFFFFFF
	}
	for _, v := range e.Sentinel {
		switch {
		case pt.Type == TypeBool || pt.Type == TypeFloat32:
			bad(n.Line, "%s: sentinel is for integer registers (a float32 NaN is always a sentinel)", e.Metric)
		case v < 0 || v > limit:
			bad(n.Line, "%s: sentinel %d is not a raw %s register value 0…%d", e.Metric, v, pt.Type, limit)
		default:
			pt.Sentinels = append(pt.Sentinels, uint32(v))
		}
	}
	if e.Mask != nil {
		switch {
		case pt.Type == TypeBool || pt.Type == TypeFloat32:
			bad(n.Line, "%s: mask is for integer registers", e.Metric)
		case *e.Mask <= 0 || *e.Mask > limit:
			bad(n.Line, "%s: mask %d outside 1…%d", e.Metric, *e.Mask, limit)
		default:
			pt.Mask = uint32(*e.Mask)
		}
	}
}

// command checks the entry of command name, node n; ok is false when it
// cannot be decoded at all.
func (p *mapParser) command(name string, n *yaml.Node) (c Command, ok bool) {
	bad := p.bad
	var e commandEntry
	if err := yamlfile.DecodeNode(n, &e); err != nil {
		bad(n.Line, "command %s: %v", name, err)
		return c, false
	}
	if !slices.Contains(knownCommands, name) {
		bad(n.Line, "command %q: firegate knows %s", name, strings.Join(knownCommands, ", "))
	}
	c = Command{Function: byte(e.Function), Step: uint16(e.Step), Line: n.Line, NoReadback: e.Readback != nil && !*e.Readback}
	if e.Function != 5 && e.Function != 6 {
		bad(n.Line, "command %s: function %d: use 5 (coil) or 6 (holding register)", name, e.Function)
	}
	if e.Address == nil || *e.Address < 0 || *e.Address > 0xFFFF {
		bad(n.Line, "command %s: address missing or outside 0…65535", name)
	} else {
		c.Address = uint16(*e.Address)
	}
	c.DeviceAddress = c.Address
	if e.Device != nil {
		if *e.Device < 0 || *e.Device > 0xFFFF {
			bad(n.Line, "command %s: device_address outside 0…65535", name)
		} else {
			c.DeviceAddress = uint16(*e.Device)
		}
	}
	if e.Step < 0 || e.Step > 0xFFFF {
		bad(n.Line, "command %s: step %d outside 0…65535", name, e.Step)
	}
	switch {
	case e.Value == nil && e.Function == 5:
		c.Value = 1
	case e.Value == nil:
		bad(n.Line, "command %s: value is missing", name)
	case *e.Value < 0 || *e.Value > 0xFFFF:
		bad(n.Line, "command %s: value %d outside 0…65535", name, *e.Value)
	default:
		c.Value = uint16(*e.Value)
	}
	return c, true
}

func parseWordOrder(s string, def bool) (bool, error) {
	switch s {
	case "":
		return def, nil
	case "big", "ABCD":
		return false, nil
	case "little", "CDAB":
		return true, nil
	}
	return false, fmt.Errorf("word_order %q: use big (high word first) or little (low word first)", s)
}

// maxGap is the largest run of unmapped registers a block reads through;
// one longer request is cheaper than two on a slow bus.
const maxGap = 8

// blocks groups points into as few reads as the protocol limits allow,
// reading through gaps of up to gap unmapped registers.
func blocks(points []Point, gap int) []Block {
	idx := make([]int, len(points))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		pa, pb := &points[idx[a]], &points[idx[b]]
		if pa.Function != pb.Function {
			return pa.Function < pb.Function
		}
		return pa.Address < pb.Address
	})
	var out []Block
	for _, i := range idx {
		p := &points[i]
		end := int(p.Address) + p.Type.Words()
		limit := 125
		if p.Function <= 2 {
			limit = 2000
		}
		if n := len(out); n > 0 {
			b := &out[n-1]
			bEnd := int(b.Address) + int(b.Count)
			if b.Function == p.Function && int(p.Address) <= bEnd+gap && max(end, bEnd)-int(b.Address) <= limit {
				b.Count = uint16(max(end, bEnd) - int(b.Address))
				b.Points = append(b.Points, i)
				continue
			}
		}
		out = append(out, Block{Function: p.Function, Address: p.Address, Count: uint16(end - int(p.Address)), Points: []int{i}})
	}
	return out
}

// Decode returns the point's value from the data of block b (register
// bytes, or packed bits).
func (p *Point) Decode(b *Block, data []byte) float64 {
	off := int(p.Address - b.Address)
	if p.Function <= 2 {
		if modbus.Bit(data, off) {
			return 1
		}
		return 0
	}
	w := data[2*off:]
	var u uint32
	if p.Type.Words() == 2 {
		hi, lo := binary.BigEndian.Uint16(w), binary.BigEndian.Uint16(w[2:])
		if p.LowWordFirst {
			hi, lo = lo, hi
		}
		u = uint32(hi)<<16 | uint32(lo)
	} else {
		u = uint32(binary.BigEndian.Uint16(w))
	}
	for _, s := range p.Sentinels {
		if u == s {
			return math.NaN()
		}
	}
	if p.Mask != 0 {
		u &= p.Mask
	}
	var raw float64
	switch p.Type {
	case TypeBool:
		if u != 0 {
			return 1
		}
		return 0
	case TypeInt16:
		raw = float64(int16(uint16(u)))
	case TypeUint16:
		raw = float64(uint16(u))
	case TypeInt32:
		raw = float64(int32(u))
	case TypeUint32:
		raw = float64(u)
	case TypeFloat32:
		f := math.Float32frombits(u)
		if f != f || math.IsInf(float64(f), 0) {
			return math.NaN()
		}
		// The shortest decimal that is the same float32: 0.31, not
		// 0.3100000023841858.
		raw, _ = strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	}
	if p.Event() {
		if raw != 0 {
			return 1
		}
		return 0
	}
	return raw*p.Scale + p.Offset
}

// Absent reports whether v, a value from Decode, is a sentinel: the
// device has no value for the point.
func Absent(v float64) bool { return math.IsNaN(v) }

// Encode returns the registers that hold v, the inverse of Decode (for
// the simulator). For bit points it returns one word, 0 or 1.
func (p *Point) Encode(v float64) []uint16 {
	if p.Type == TypeBool || p.Event() {
		if v != 0 {
			return []uint16{1}
		}
		return []uint16{0}
	}
	raw := (v - p.Offset) / p.Scale
	var u uint32
	switch p.Type {
	case TypeInt16:
		return []uint16{uint16(int16(math.Round(raw)))}
	case TypeUint16:
		return []uint16{uint16(math.Round(raw))}
	case TypeInt32:
		u = uint32(int32(math.Round(raw)))
	case TypeUint32:
		u = uint32(math.Round(raw))
	case TypeFloat32:
		u = math.Float32bits(float32(raw))
	}
	hi, lo := uint16(u>>16), uint16(u)
	if p.LowWordFirst {
		return []uint16{lo, hi}
	}
	return []uint16{hi, lo}
}
