package influx

import (
	"fmt"
	"time"

	protocol "github.com/influxdata/line-protocol"
)

// point is one parsed line.
type point struct {
	name    string
	tags    map[string]string
	floats  map[string]float64
	strings map[string]string
	ms      int64
}

// parseLine parses exactly one line of line protocol with millisecond
// timestamps using InfluxData's reference parser (the one Telegraf uses).
func parseLine(line []byte) (*point, error) {
	h := protocol.NewMetricHandler()
	h.SetTimePrecision(time.Millisecond)
	ms, err := protocol.NewParser(h).Parse(line)
	if err != nil {
		return nil, err
	}
	if len(ms) != 1 {
		return nil, fmt.Errorf("parsed %d points, want 1", len(ms))
	}
	m := ms[0]
	p := &point{name: m.Name(), tags: map[string]string{}, floats: map[string]float64{}, strings: map[string]string{}}
	for _, t := range m.TagList() {
		if _, dup := p.tags[t.Key]; dup {
			return nil, fmt.Errorf("tag %s twice", t.Key)
		}
		p.tags[t.Key] = t.Value
	}
	for _, f := range m.FieldList() {
		if _, dup := p.floats[f.Key]; dup {
			return nil, fmt.Errorf("field %s twice", f.Key)
		}
		switch v := f.Value.(type) {
		case float64:
			p.floats[f.Key] = v
		case string:
			p.strings[f.Key] = v
		default:
			return nil, fmt.Errorf("field %s has type %T, want float64 or string", f.Key, f.Value)
		}
	}
	p.ms = m.Time().UnixNano() / int64(time.Millisecond)
	return p, nil
}
