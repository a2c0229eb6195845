package influx

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/firewatch-iot/firewatch/devices"
)

// AlarmMeasurement is the measurement of alarm transitions, read by Grafana
// as annotations.
const AlarmMeasurement = "alarms"

// maxMillis bounds device times: InfluxDB keeps nanoseconds in an int64,
// so it rejects times outside 1677-09-21 … 2262-04-11 (and with them, in
// 1.8, the rest of the request's lines).
const maxMillis = 9223372036854

// maxMessage bounds the alarm message stored in InfluxDB, in bytes; the full
// text lives in the alarm store.
const maxMessage = 4096

// Encoder appends line protocol for the readings and alarms of the devices of
// one ledger. It precomputes every device's measurement and tags once, so
// that encoding a reading copies bytes and formats numbers and nothing else.
// It is read-only after NewEncoder and safe for concurrent use.
//
// Tags are written in key order (ch, county, device, kind, [rule, severity,
// state,] town, village), the order InfluxDB stores them in, which spares
// the server a sort per point.
type Encoder struct {
	// ids holds every device's id, escaped as a tag value: device i's is
	// ids[off[i]:off[i+1]].
	ids []byte
	off []uint32
	// place is, per device, its entry in places: the devices of a kind in
	// a village share one (a few thousand for a million devices), so that
	// a device costs its id and 8 bytes (issue 18) while a line is still
	// copied from precomputed bytes.
	place  []uint32
	places []placeTags
	// fields holds the escaped field key and '=' of every catalog metric.
	fields [][]byte
}

// placeTags are the measurement and tags shared by the devices of one kind
// in one village, "<kind>,county=C,device=,kind=K,town=T,village=V", into
// which a line puts the device's id (and its channel): a line without a
// channel is three copies.
type placeTags struct {
	b []byte
	// meas ends the measurement (",ch=N" goes after it), dev ",device="
	// (the id goes after it) and split the kind tag (the alarm tags rule,
	// severity and state go after it).
	meas, dev, split uint8
}

// NewEncoder precomputes the measurement and tags of every device of l.
func NewEncoder(l *devices.Ledger) *Encoder {
	e := &Encoder{
		off:    make([]uint32, len(l.Devices)+1),
		place:  make([]uint32, len(l.Devices)),
		fields: make([][]byte, len(devices.Catalog)),
	}
	size := 0
	for i := range l.Devices {
		size += len(l.Devices[i].ID)
	}
	e.ids = make([]byte, 0, size)
	type key struct {
		kind devices.Kind
		grid devices.Grid
	}
	byPlace := map[key]uint32{}
	for i := range l.Devices {
		d := &l.Devices[i]
		k := key{d.Kind, d.Grid}
		pi, ok := byPlace[k]
		if !ok {
			pi = uint32(len(e.places))
			byPlace[k] = pi
			e.places = append(e.places, newPlaceTags(d.Kind, d.Grid))
		}
		e.place[i] = pi
		e.ids = appendKey(e.ids, d.ID)
		e.off[i+1] = uint32(len(e.ids))
	}
	for m := 1; m < len(devices.Catalog); m++ {
		e.fields[m] = append(appendKey(nil, devices.Catalog[m].Name), '=')
	}
	return e
}

func newPlaceTags(k devices.Kind, g devices.Grid) placeTags {
	kind := k.String()
	if k == devices.KindInvalid || k >= devices.NumKinds {
		kind = "unknown" // a ledger never holds one; an empty name would be invalid
	}
	var p placeTags
	p.b = appendName(p.b, kind)
	p.meas = uint8(len(p.b))
	if len(g) == 12 {
		p.b = appendTag(p.b, "county", g.County())
	}
	p.b = append(p.b, ",device="...)
	p.dev = uint8(len(p.b))
	p.b = appendTag(p.b, "kind", kind)
	p.split = uint8(len(p.b))
	if len(g) == 12 {
		p.b = appendTag(p.b, "town", g.Town())
		p.b = appendTag(p.b, "village", g.Village())
	}
	return p
}

// appendTags appends the tags of device d from its county to its kind:
// county, device, kind (the alarm tags go after them, then town and
// village).
func (e *Encoder) appendTags(buf []byte, d devices.Index, p *placeTags) []byte {
	return append(e.appendDevice(append(buf, p.b[p.meas:p.dev]...), d), p.b[p.dev:p.split]...)
}

// appendDevice appends d's id after ",device=" at the end of buf, or takes
// the ",device=" back for a device without one (no line has an empty tag).
func (e *Encoder) appendDevice(buf []byte, d devices.Index) []byte {
	if id := e.ids[e.off[d]:e.off[d+1]]; len(id) > 0 {
		return append(buf, id...)
	}
	return buf[:len(buf)-len(",device=")]
}

// AppendLine appends one line of line protocol, ending in '\n', for a message
// of device d: the values of metrics on channel ch (0 for none) at device
// time ts in Unix milliseconds. metrics and values are parallel and name
// each metric at most once. Non-finite values, which InfluxDB rejects
// together with their whole line, are left out; when no value remains, d is
// not a device of the ledger or ts lies outside the years 1677 to 2262 that
// InfluxDB can store, nothing is appended.
func (e *Encoder) AppendLine(buf []byte, d devices.Index, ch uint8, metrics []devices.Metric, values []float64, ts int64) []byte {
	if int(d) >= len(e.place) || ts > maxMillis || ts < -maxMillis {
		return buf
	}
	start := len(buf)
	p := &e.places[e.place[d]]
	if ch == 0 {
		buf = append(buf, p.b[:p.dev]...)
	} else {
		buf = append(buf, p.b[:p.meas]...)
		buf = append(buf, ",ch="...)
		buf = strconv.AppendUint(buf, uint64(ch), 10)
		buf = append(buf, p.b[p.meas:p.dev]...)
	}
	buf = e.appendDevice(buf, d)
	buf = append(buf, p.b[p.dev:]...)
	sep := byte(' ')
	n := min(len(metrics), len(values))
	for i := 0; i < n; i++ {
		v, mt := values[i], metrics[i]
		if math.IsNaN(v) || math.IsInf(v, 0) || mt == 0 || int(mt) >= len(e.fields) {
			continue
		}
		buf = append(buf, sep)
		sep = ','
		buf = append(buf, e.fields[mt]...)
		buf = appendFloat(buf, v)
	}
	if sep == ' ' {
		return buf[:start]
	}
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, ts, 10)
	return append(buf, '\n')
}

// AlarmPoint is one alarm transition as stored in the alarms measurement.
type AlarmPoint struct {
	Device devices.Index
	// Rule is the name of the rule that fired.
	Rule string
	// Severity is the alarm's severity (e.g. "warning", "fire").
	Severity string
	// State is "raised" or "cleared".
	State string
	// Value is the reading that caused the transition; Threshold the limit
	// it crossed.
	Value, Threshold float64
	// AlarmID is the alarm's id in the alarm store.
	AlarmID string
	// Message is the dispatcher text, truncated to 4 KiB.
	Message string
	// Time is the transition's device time in Unix milliseconds.
	Time int64
}

// AppendAlarm appends one line for an alarm transition to measurement
// alarms: tags county, device, kind, rule, severity, state, town, village
// (empty ones left out); fields value and threshold (when finite), alarm_id
// and message (strings). Nothing is appended when a.Device is not a device
// of the ledger or a.Time is outside InfluxDB's range.
func (e *Encoder) AppendAlarm(buf []byte, a AlarmPoint) []byte {
	if int(a.Device) >= len(e.place) || a.Time > maxMillis || a.Time < -maxMillis {
		return buf
	}
	p := &e.places[e.place[a.Device]]
	buf = append(buf, AlarmMeasurement...)
	buf = e.appendTags(buf, a.Device, p)
	buf = appendTag(buf, "rule", a.Rule)
	buf = appendTag(buf, "severity", a.Severity)
	buf = appendTag(buf, "state", a.State)
	buf = append(buf, p.b[p.split:]...)
	buf = append(buf, " alarm_id="...)
	buf = appendString(buf, a.AlarmID)
	if !math.IsNaN(a.Value) && !math.IsInf(a.Value, 0) {
		buf = append(buf, ",value="...)
		buf = appendFloat(buf, a.Value)
	}
	if !math.IsNaN(a.Threshold) && !math.IsInf(a.Threshold, 0) {
		buf = append(buf, ",threshold="...)
		buf = appendFloat(buf, a.Threshold)
	}
	msg := a.Message
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	buf = append(buf, ",message="...)
	buf = appendString(buf, msg)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, a.Time, 10)
	return append(buf, '\n')
}

// ResponseMeasurement is the measurement of the response times of closed
// alarms (考核), one point per alarm at the time it was closed.
const ResponseMeasurement = "alarm_response"

// ResponsePoint is the response-time accounting of one closed alarm.
type ResponsePoint struct {
	Device devices.Index
	// Station is the station the alarm was routed to; Rule, Severity as
	// for AlarmPoint; Outcome the closed state (resolved, false_alarm,
	// test, auto_cleared).
	Station, Rule, Severity, Outcome string
	AlarmID                          string
	// Seconds are the seconds from raised to each state, in the order of
	// ResponseFields; NaN where the alarm never got there.
	Seconds [NumResponseFields]float64
	// RespondedInTime and ArrivedInTime compare with the targets; nil where
	// the alarm was not acknowledged or no one arrived.
	RespondedInTime, ArrivedInTime *bool
	// Time is when the alarm was closed, in Unix milliseconds.
	Time int64
}

// ResponseFields name ResponsePoint.Seconds as fields.
var ResponseFields = [...]string{"device_to_raised_s", "pushed_s", "received_s", "acknowledged_s", "dispatched_s",
	"arrived_s", "closed_s"}

// NumResponseFields is the number of ResponseFields.
const NumResponseFields = 7

// AppendResponse appends one line for a closed alarm to measurement
// alarm_response: tags county, device, kind, outcome, rule, severity,
// station, town, village; fields alarm_id (string), the seconds that are
// known, responded_in_time and arrived_in_time (1 or 0, floats: their mean
// is the share in time). Grafana computes medians, 90th percentiles and
// shares per station or grid from them.
func (e *Encoder) AppendResponse(buf []byte, p ResponsePoint) []byte {
	if int(p.Device) >= len(e.place) || p.Time > maxMillis || p.Time < -maxMillis {
		return buf
	}
	pt := &e.places[e.place[p.Device]]
	buf = append(buf, ResponseMeasurement...)
	buf = e.appendTags(buf, p.Device, pt)
	buf = appendTag(buf, "outcome", p.Outcome)
	buf = appendTag(buf, "rule", p.Rule)
	buf = appendTag(buf, "severity", p.Severity)
	buf = appendTag(buf, "station", p.Station)
	buf = append(buf, pt.b[pt.split:]...)
	buf = append(buf, " alarm_id="...)
	buf = appendString(buf, p.AlarmID)
	for i, v := range p.Seconds {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		buf = append(buf, ',')
		buf = append(buf, ResponseFields[i]...)
		buf = append(buf, '=')
		buf = appendFloat(buf, v)
	}
	for _, f := range []struct {
		name string
		v    *bool
	}{{"responded_in_time", p.RespondedInTime}, {"arrived_in_time", p.ArrivedInTime}} {
		if f.v != nil {
			buf = append(buf, ',')
			buf = append(buf, f.name...)
			if *f.v {
				buf = append(buf, "=1"...)
			} else {
				buf = append(buf, "=0"...)
			}
		}
	}
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, p.Time, 10)
	return append(buf, '\n')
}

// appendFloat writes v in a form that parses back to exactly v: plain
// decimal, except below 1e-6 and from 1e21 on, where exponent form (1e-07,
// 1.5e+21) is shorter; InfluxDB 1.8, 2.x and 3.x parse both. A whole number
// gets no 'i' suffix, so it is a float field like every other value of the
// metric: a field keeps its first type forever, and a later 0.5 must not
// conflict with an earlier 1.
//
// Sensor values have few decimals (221.4 V, 36.55 °C, 0.35 MPa): for them
// a fast path finds the decimal m/10^k, k ≤ 4, that is v, and prints the
// integer m with a decimal point, several times faster than the general
// shortest-representation algorithm of strconv.
func appendFloat(buf []byte, v float64) []byte {
	if a := math.Abs(v); a < 1e12 && v != 0 {
		for k, p := range pow10 {
			x := v * p
			m := float64(int64(x + math.Copysign(0.5, x))) // round half away from zero; |x| < 2^63
			if m/p == v {
				// m and p are exact, so m/p is the double nearest to the
				// decimal m/10^k, as parsing that decimal gives.
				return appendDecimal(buf, int64(m), k)
			}
		}
	}
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.AppendFloat(buf, v, 'e', -1, 64)
	}
	return strconv.AppendFloat(buf, v, 'f', -1, 64)
}

var pow10 = [...]float64{1, 10, 100, 1000, 10000}

// appendDecimal appends m/10^k with k digits after the point.
func appendDecimal(buf []byte, m int64, k int) []byte {
	if m < 0 {
		buf = append(buf, '-')
		m = -m
	}
	var tmp [24]byte
	d := strconv.AppendInt(tmp[:0], m, 10)
	if k == 0 {
		return append(buf, d...)
	}
	if len(d) <= k {
		buf = append(buf, '0', '.')
		for i := len(d); i < k; i++ {
			buf = append(buf, '0')
		}
		return append(buf, d...)
	}
	buf = append(buf, d[:len(d)-k]...)
	buf = append(buf, '.')
	return append(buf, d[len(d)-k:]...)
}

// appendTag appends ",key=value" with both escaped, or nothing when value
// is empty: line protocol has no empty tag values.
func appendTag(buf []byte, key, value string) []byte {
	if value == "" {
		return buf
	}
	buf = append(buf, ',')
	buf = appendKey(buf, key)
	buf = append(buf, '=')
	return appendKey(buf, value)
}

// appendName escapes a measurement name as appendKey does, except for '=',
// which line protocol takes as is in a measurement.
func appendName(buf []byte, s string) []byte { return appendEscaped(buf, s, false) }

// appendKey escapes a tag key, tag value or field key: commas, equals signs
// and spaces get a backslash. Some characters cannot be written faithfully
// for InfluxDB 1.8 and are replaced: control characters (a line break ends
// the line; parsers disagree about tabs) become spaces, and a backslash
// becomes '/' (1.8 keeps "\\" as two characters, and a value ending in a
// backslash would escape the comma after it). Device ids and grid codes
// contain none of them.
func appendKey(buf []byte, s string) []byte { return appendEscaped(buf, s, true) }

// appendEscaped is appendKey, or appendName when equals is false.
func appendEscaped(buf []byte, s string, equals bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ',' || c == ' ' || c == '=' && equals:
			buf = append(buf, '\\', c)
		case c == '\\':
			buf = append(buf, '/')
		case c < ' ':
			buf = append(buf, '\\', ' ')
		default:
			buf = append(buf, c)
		}
	}
	return buf
}

// appendString appends a quoted string field value, escaping '"' and '\'.
// Line breaks become spaces: InfluxDB would accept them inside quotes, but
// "one line is one point" is what batching, counting and the spool rely on.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		default:
			if c < ' ' {
				c = ' '
			}
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}
