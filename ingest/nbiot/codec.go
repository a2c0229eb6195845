package nbiot

import (
	"bytes"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/yamlfile"
)

// Format is how a product's payload is laid out.
type Format uint8

// Payload formats.
const (
	FormatInvalid Format = iota
	FormatJSON           // thing-model properties: Report.JSON
	FormatBinary         // passthrough bytes: Report.Payload
)

// FieldType is the layout of a binary field.
type FieldType uint8

// Binary field types.
const (
	TypeNone FieldType = iota
	U8
	I8
	U16
	I16
	U32
	I32
	F32
)

var fieldTypes = map[string]FieldType{"u8": U8, "i8": I8, "u16": U16, "i16": I16, "u32": U32, "i32": I32, "f32": F32}

// Size is the field's length in bytes.
func (t FieldType) Size() int {
	switch t {
	case U8, I8:
		return 1
	case U16, I16:
		return 2
	}
	return 4
}

// Field is one mapping of a product: where a value is and which catalog
// metric or event (and channel) it becomes.
type Field struct {
	Metric devices.Metric
	Ch     int
	// Path is the dotted JSON path (FormatJSON): "Battery_Level",
	// "params.rsrp.value"; a numeric segment indexes an array.
	Path []string
	// Offset, Type and LittleEndian place a binary field (FormatBinary).
	Offset       int
	Type         FieldType
	LittleEndian bool
	// Bit, when ≥ 0, takes one bit of an integer field (0 = least
	// significant) before Active/Inactive and scaling.
	Bit int
	// Active and Inactive are the raw values that raise and clear an
	// event. Empty Active means any non-zero raises; empty Inactive means
	// only 0 clears. A value in neither list leaves the event unreported
	// (an enumeration's "fault" state does not clear a smoke alarm).
	Active, Inactive []float64
	Scale, Offset0   float64 // value = raw*Scale + Offset0, for metrics
	// Sentinels are raw values meaning "no value" (a sensor not connected):
	// the metric is reported as NaN (null).
	Sentinels []float64
	Line      int
}

// Codec is the payload mapping of one detector product.
type Codec struct {
	Product   string
	Kind      devices.Kind
	Platforms []string // the platforms the product reports through (ctwing, onenet)
	Format    Format
	Header    []byte // a binary frame must start with these bytes
	MinLength int    // a binary frame must be at least this long
	Fields    []Field
	File      string
}

// Codecs holds product codecs by product name.
type Codecs map[string]*Codec

//go:embed maps/*.yaml
var shipped embed.FS

// ShippedCodecs returns the product codecs shipped with firewatch
// (ingest/nbiot/maps).
func ShippedCodecs() (Codecs, error) {
	cs := Codecs{}
	err := yamlfile.EachIn(shipped, "maps", func(name string, b []byte) error {
		c, err := ParseCodec(name, b)
		if err != nil {
			return err
		}
		if prev, dup := cs[c.Product]; dup {
			return fmt.Errorf("%s: product %q is also defined in %s", c.File, c.Product, prev.File)
		}
		cs[c.Product] = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// LoadCodecs adds the codecs in paths (files, or directories of *.yaml) to
// cs; a later codec of the same product replaces an earlier one.
func (cs Codecs) LoadCodecs(paths []string) error {
	return yamlfile.Each(paths, "product codec", func(name string, b []byte) error {
		c, err := ParseCodec(name, b)
		if err != nil {
			return err
		}
		cs[c.Product] = c
		return nil
	})
}

type codecFile struct {
	Product     string      `yaml:"product"`
	Kind        string      `yaml:"kind"`
	Vendor      string      `yaml:"vendor"`
	Description string      `yaml:"description"`
	Platforms   []string    `yaml:"platforms"`
	Format      string      `yaml:"format"`
	Endian      string      `yaml:"endian"`
	Header      string      `yaml:"header"`
	MinLength   int         `yaml:"min_length"`
	Fields      []yaml.Node `yaml:"fields"`
}

type fieldEntry struct {
	Metric   string    `yaml:"metric"`
	Ch       int       `yaml:"ch"`
	Unit     string    `yaml:"unit"`
	Path     string    `yaml:"path"`
	Offset   *int      `yaml:"offset"`
	Type     string    `yaml:"type"`
	Endian   string    `yaml:"endian"`
	Bit      *int      `yaml:"bit"`
	Active   []float64 `yaml:"active"`
	Inactive []float64 `yaml:"inactive"`
	Scale    *float64  `yaml:"scale"`
	Add      float64   `yaml:"add"`
	Sentinel []float64 `yaml:"sentinel"`
}

// maxFrame bounds offsets: an NB-IoT uplink is far smaller.
const maxFrame = 4096

// ParseCodec parses a product codec; name is used in messages. Every
// problem is reported with its line, as a *devices.LoadError.
func ParseCodec(name string, b []byte) (*Codec, error) {
	var f codecFile
	if err := yamlfile.Decode(b, &f); err != nil {
		return nil, &devices.LoadError{Problems: []devices.Problem{{File: name, Line: yamlfile.Line(err), Reason: yamlfile.Reason(err)}}}
	}
	var probs []devices.Problem
	bad := func(line int, format string, args ...any) {
		probs = append(probs, devices.Problem{File: name, Line: line, Reason: fmt.Sprintf(format, args...)})
	}
	c := &Codec{Product: f.Product, File: name, MinLength: f.MinLength, Platforms: f.Platforms}
	if f.Product == "" {
		bad(1, "product is missing")
	}
	kind, err := devices.ParseKind(f.Kind)
	if err != nil {
		bad(1, "kind: %v", err)
	}
	c.Kind = kind
	for _, p := range f.Platforms {
		if p != "ctwing" && p != "onenet" {
			bad(1, "platforms: %q: use ctwing or onenet", p)
		}
	}
	switch f.Format {
	case "json":
		c.Format = FormatJSON
	case "binary":
		c.Format = FormatBinary
	default:
		bad(1, "format %q: use json (thing-model properties) or binary (passthrough bytes)", f.Format)
	}
	little, err := parseEndian(f.Endian, false)
	if err != nil {
		bad(1, "%v", err)
	}
	if f.Header != "" {
		h, err := hex.DecodeString(strings.ReplaceAll(f.Header, " ", ""))
		if err != nil || c.Format != FormatBinary {
			bad(1, "header %q: hex bytes, for format binary only", f.Header)
		}
		c.Header = h
	}
	if f.MinLength < 0 || f.MinLength > maxFrame || (f.MinLength != 0 && c.Format != FormatBinary) {
		bad(1, "min_length %d: 0…%d, for format binary only", f.MinLength, maxFrame)
	}
	if len(f.Fields) == 0 {
		bad(1, "fields is empty")
	}
	type slot struct {
		m  devices.Metric
		ch int
	}
	seen := map[slot]int{}
	for i := range f.Fields {
		n := &f.Fields[i]
		var e fieldEntry
		if err := yamlfile.DecodeNode(n, &e); err != nil {
			bad(n.Line, "field: %v", err)
			continue
		}
		fd := Field{Ch: e.Ch, Bit: -1, Scale: 1, Offset0: e.Add, Line: n.Line, Active: e.Active, Inactive: e.Inactive, Sentinels: e.Sentinel}
		m, problems, ok := devices.MapTarget(kind, e.Metric, e.Unit, e.Ch)
		for _, msg := range problems {
			bad(n.Line, "%s", msg)
		}
		if !ok {
			continue
		}
		fd.Metric = m
		info := m.Info()
		if e.Scale != nil {
			fd.Scale = *e.Scale
		}
		if fd.Scale == 0 || math.IsNaN(fd.Scale) || math.IsInf(fd.Scale, 0) || math.IsNaN(fd.Offset0) || math.IsInf(fd.Offset0, 0) {
			bad(n.Line, "%s: scale must be finite and non-zero, add finite", e.Metric)
		}
		if info.Event && (e.Scale != nil || e.Add != 0 || len(e.Sentinel) > 0) {
			bad(n.Line, "%s is an event: use bit, active and inactive, not scale, add or sentinel", e.Metric)
		}
		if !info.Event && (len(e.Active) > 0 || len(e.Inactive) > 0) {
			bad(n.Line, "%s is a metric: active and inactive are for events", e.Metric)
		}
		for _, v := range e.Active {
			if slices.Contains(e.Inactive, v) {
				bad(n.Line, "%s: %v is both active and inactive", e.Metric, v)
			}
		}
		switch c.Format {
		case FormatJSON:
			if e.Path == "" || e.Offset != nil || e.Type != "" || e.Endian != "" {
				bad(n.Line, "%s: a json field has a path, and no offset, type or endian", e.Metric)
			} else {
				fd.Path = strings.Split(e.Path, ".")
				if slices.Contains(fd.Path, "") {
					bad(n.Line, "%s: path %q has an empty segment", e.Metric, e.Path)
				}
			}
		case FormatBinary:
			if e.Path != "" {
				bad(n.Line, "%s: a binary field has offset and type, not path", e.Metric)
			}
			fd.Type = fieldTypes[e.Type]
			if fd.Type == TypeNone {
				bad(n.Line, "%s: type %q: use u8, i8, u16, i16, u32, i32 or f32", e.Metric, e.Type)
			}
			if e.Offset == nil || *e.Offset < 0 || *e.Offset+fd.Type.Size() > maxFrame {
				bad(n.Line, "%s: offset missing or outside 0…%d", e.Metric, maxFrame-fd.Type.Size())
			} else {
				fd.Offset = *e.Offset
			}
			if fd.LittleEndian, err = parseEndian(e.Endian, little); err != nil {
				bad(n.Line, "%s: %v", e.Metric, err)
			}
			if fd.Type != TypeNone && c.MinLength > 0 && fd.Offset+fd.Type.Size() > c.MinLength {
				bad(n.Line, "%s: ends at byte %d, beyond min_length %d", e.Metric, fd.Offset+fd.Type.Size(), c.MinLength)
			}
		}
		if e.Bit != nil {
			fd.Bit = *e.Bit
			switch {
			case fd.Type == F32:
				bad(n.Line, "%s: bit is for integer fields", e.Metric)
			case c.Format == FormatBinary && fd.Type != TypeNone && (fd.Bit < 0 || fd.Bit >= 8*fd.Type.Size()):
				bad(n.Line, "%s: bit %d outside 0…%d", e.Metric, fd.Bit, 8*fd.Type.Size()-1)
			case fd.Bit < 0 || fd.Bit > 31:
				bad(n.Line, "%s: bit %d outside 0…31", e.Metric, fd.Bit)
			}
		}
		if prev, dup := seen[slot{m, e.Ch}]; dup {
			bad(n.Line, "%s ch %d is already mapped at line %d", e.Metric, e.Ch, prev)
		}
		seen[slot{m, e.Ch}] = n.Line
		c.Fields = append(c.Fields, fd)
	}
	if len(probs) > 0 {
		return nil, &devices.LoadError{Problems: probs}
	}
	return c, nil
}

func parseEndian(s string, def bool) (bool, error) {
	switch s {
	case "":
		return def, nil
	case "big":
		return false, nil
	case "little":
		return true, nil
	}
	return false, fmt.Errorf("endian %q: use big or little", s)
}

// Apply decodes r's payload (JSON or Payload, by the codec's format) and
// appends the values it maps to r.Values. A field that is absent from a
// JSON object is skipped silently (thing models report changed properties
// only). A field that does not fit (wrong type, frame too short, NaN) is
// skipped and reported in the returned error, which wraps ErrCodec: the
// other fields are kept, so a bad battery byte never hides a smoke alarm in
// the same frame. A payload that cannot be read at all returns ErrCodec and
// appends nothing.
func (c *Codec) Apply(r *Report) error {
	switch c.Format {
	case FormatJSON:
		return c.applyJSON(r)
	case FormatBinary:
		return c.applyBinary(r)
	}
	return fmt.Errorf("%w: codec %s has no format", ErrCodec, c.Product)
}

func (c *Codec) applyJSON(r *Report) error {
	if r.JSON == nil {
		return fmt.Errorf("%w: %s expects thing-model JSON, the report has %d passthrough bytes", ErrCodec, c.Product, len(r.Payload))
	}
	dec := json.NewDecoder(bytes.NewReader(r.JSON))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCodec, c.Product, err)
	}
	var errs []error
	for i := range c.Fields {
		f := &c.Fields[i]
		v, ok := lookup(root, f.Path)
		if !ok {
			continue
		}
		raw, err := jsonNumber(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", strings.Join(f.Path, "."), err))
			continue
		}
		if err := c.emit(r, f, raw); err != nil {
			errs = append(errs, err)
		}
	}
	return joinCodec(c.Product, errs)
}

func lookup(v any, path []string) (any, bool) {
	for _, seg := range path {
		switch t := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = t[seg]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, v != nil
}

func jsonNumber(v any) (float64, error) {
	switch t := v.(type) {
	case json.Number:
		return strconv.ParseFloat(string(t), 64)
	case bool:
		if t {
			return 1, nil
		}
		return 0, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", t)
		}
		return f, nil
	}
	return 0, fmt.Errorf("not a number, bool or numeric string")
}

func (c *Codec) applyBinary(r *Report) error {
	p := r.Payload
	if p == nil {
		return fmt.Errorf("%w: %s expects passthrough bytes, the report has JSON", ErrCodec, c.Product)
	}
	if !bytes.HasPrefix(p, c.Header) {
		return fmt.Errorf("%w: %s: frame does not start with % X", ErrCodec, c.Product, c.Header)
	}
	if len(p) < c.MinLength {
		return fmt.Errorf("%w: %s: frame of %d bytes, want at least %d", ErrCodec, c.Product, len(p), c.MinLength)
	}
	var errs []error
	for i := range c.Fields {
		f := &c.Fields[i]
		end := f.Offset + f.Type.Size()
		if end > len(p) {
			errs = append(errs, fmt.Errorf("%s: bytes %d…%d beyond a frame of %d", f.Metric.Info().Name, f.Offset, end-1, len(p)))
			continue
		}
		if err := c.emit(r, f, readField(p[f.Offset:end], f.Type, f.LittleEndian)); err != nil {
			errs = append(errs, err)
		}
	}
	return joinCodec(c.Product, errs)
}

func readField(b []byte, t FieldType, little bool) float64 {
	var bo binary.ByteOrder = binary.BigEndian
	if little {
		bo = binary.LittleEndian
	}
	switch t {
	case U8:
		return float64(b[0])
	case I8:
		return float64(int8(b[0]))
	case U16:
		return float64(bo.Uint16(b))
	case I16:
		return float64(int16(bo.Uint16(b)))
	case U32:
		return float64(bo.Uint32(b))
	case I32:
		return float64(int32(bo.Uint32(b)))
	case F32:
		return float64(math.Float32frombits(bo.Uint32(b)))
	}
	return math.NaN()
}

// emit turns one raw value into a Value of r.
func (c *Codec) emit(r *Report, f *Field, raw float64) error {
	name := f.Metric.Info().Name
	if math.IsNaN(raw) || math.IsInf(raw, 0) {
		if !f.Metric.Info().Event && f.Type == F32 {
			r.Values = append(r.Values, Value{Metric: f.Metric, Ch: f.Ch, Value: math.NaN()})
			return nil
		}
		return fmt.Errorf("%s: not a finite number", name)
	}
	if f.Bit >= 0 {
		if raw != math.Trunc(raw) || raw < math.MinInt32 || raw > math.MaxUint32 {
			return fmt.Errorf("%s: bit %d of a non-integer %v", name, f.Bit, raw)
		}
		raw = float64(uint32(int64(raw)) >> f.Bit & 1)
	}
	if f.Metric.Info().Event {
		var v float64
		switch {
		case slices.Contains(f.Active, raw), len(f.Active) == 0 && raw != 0 && !slices.Contains(f.Inactive, raw):
			v = 1
		case slices.Contains(f.Inactive, raw), len(f.Inactive) == 0 && raw == 0:
			v = 0
		default:
			return nil // a state this event does not speak of
		}
		r.Values = append(r.Values, Value{Metric: f.Metric, Ch: f.Ch, Value: v})
		return nil
	}
	if slices.Contains(f.Sentinels, raw) {
		r.Values = append(r.Values, Value{Metric: f.Metric, Ch: f.Ch, Value: math.NaN()})
		return nil
	}
	r.Values = append(r.Values, Value{Metric: f.Metric, Ch: f.Ch, Value: raw*f.Scale + f.Offset0})
	return nil
}

func joinCodec(product string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrCodec, product, errors.Join(errs...))
}
