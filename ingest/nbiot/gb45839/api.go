package gb45839

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Status values of status_info.
const (
	StatusNormal   = 1 // 正常监视
	StatusAlarm    = 2 // 报警 (fire)
	StatusFault    = 3 // 故障
	StatusDisabled = 4 // 屏蔽
)

// DateTimeLayout is the layout of status_info's datetime (example
// "2019-06-11 07:25:55"). The standard states no time zone: China Standard
// Time is assumed (decisions).
const DateTimeLayout = "2006-01-02 15:04:05"

// CST is China Standard Time, fixed UTC+8 (no tzdata needed).
var CST = time.FixedZone("CST", 8*3600)

var (
	smokeAlarm = mustMetric("smoke_alarm")
	fault      = mustMetric("fault")
	battery    = mustMetric("battery_pct")
)

func mustMetric(name string) devices.Metric {
	m, ok := devices.MetricByName(devices.KindSmoke, name)
	if !ok {
		panic("gb45839: catalog has no smoke metric " + name)
	}
	return m
}

// Answer is the reply body of both interfaces: {"success":1} or
// {"success":0}.
func Answer(ok bool) []byte {
	if ok {
		return []byte(`{"success":1}`)
	}
	return []byte(`{"success":0}`)
}

// number is a JSON number that may also come as a numeric string, or
// be absent (set false).
type number struct {
	v   float64
	set bool
}

func (n *number) UnmarshalJSON(b []byte) error {
	b, empty, err := nbiot.NumberText(b)
	if err != nil || empty {
		return err
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("not a number: %s", b)
	}
	n.v, n.set = v, true
	return nil
}

func (n number) int() (int, bool) {
	if !n.set || n.v != math.Trunc(n.v) || math.Abs(n.v) > 1<<31 {
		return 0, false
	}
	return int(n.v), true
}

// decodeBody unmarshals the body of an interface into v and checks the
// device serial it names (*serial, a field of v): the report of type t for
// that device, or an error wrapping a sentinel of package nbiot.
func decodeBody(body []byte, v any, serial *string, t nbiot.Type) (nbiot.Report, error) {
	r := nbiot.Report{Platform: nbiot.PlatformGB45839, Type: t, Seq: -1}
	if err := json.Unmarshal(body, v); err != nil {
		return r, fmt.Errorf("%w: %v", nbiot.ErrMalformed, err)
	}
	if *serial == "" {
		return r, fmt.Errorf("%w: serial missing", nbiot.ErrNoDevice)
	}
	if _, err := ParseSerial(*serial); err != nil {
		return r, err
	}
	r.Device.Serial = *serial
	return r, nil
}

type statusInfo struct {
	Company  string `json:"company"`
	Serial   string `json:"serial"`
	Status   number `json:"status"`
	Signal   number `json:"signalStrength"`
	Battery  number `json:"batteryPercentage"`
	DateTime string `json:"datetime"`
}

// DecodeStatus decodes a status_info body. Status 1 clears smoke_alarm and
// fault; 2 raises smoke_alarm (fire); 3 raises fault; 4 marks the device
// disabled (屏蔽) and says nothing of alarm or fault. battery_pct comes
// from batteryPercentage; signalStrength is kept raw in Signal because the
// standard gives no unit. Errors wrap the sentinels of package nbiot.
func DecodeStatus(body []byte) (nbiot.Report, error) {
	var s statusInfo
	r, err := decodeBody(body, &s, &s.Serial, nbiot.TypeStatus)
	if err != nil {
		return r, err
	}
	st, ok := s.Status.int()
	if !s.Status.set {
		return r, fmt.Errorf("%w: status missing", nbiot.ErrMalformed)
	}
	if !ok || st < StatusNormal || st > StatusDisabled {
		return r, fmt.Errorf("%w: status %v is not 1 (normal), 2 (alarm), 3 (fault) or 4 (disabled)", nbiot.ErrBadValue, s.Status.v)
	}
	if s.DateTime != "" {
		t, err := time.ParseInLocation(DateTimeLayout, s.DateTime, CST)
		if err != nil {
			return r, fmt.Errorf("%w: datetime %q is not yyyy-MM-dd HH:mm:ss", nbiot.ErrBadValue, s.DateTime)
		}
		r.Time = t
	}
	r.Values = make([]nbiot.Value, 0, 3)
	switch st {
	case StatusNormal:
		r.Values = append(r.Values, nbiot.Value{Metric: smokeAlarm}, nbiot.Value{Metric: fault})
	case StatusAlarm:
		r.Values = append(r.Values, nbiot.Value{Metric: smokeAlarm, Value: 1})
	case StatusFault:
		r.Values = append(r.Values, nbiot.Value{Metric: fault, Value: 1})
	case StatusDisabled:
		r.Disabled = true
	}
	if s.Battery.set {
		if s.Battery.v < 0 || s.Battery.v > 100 {
			return r, fmt.Errorf("%w: batteryPercentage %v outside 0…100", nbiot.ErrBadValue, s.Battery.v)
		}
		r.Values = append(r.Values, nbiot.Value{Metric: battery, Value: s.Battery.v})
	}
	if s.Signal.set {
		v, ok := s.Signal.int()
		if !ok {
			return r, fmt.Errorf("%w: signalStrength %v is not an integer", nbiot.ErrBadValue, s.Signal.v)
		}
		r.Signal, r.SignalSet = v, true
	}
	return r, nil
}

type installInfo struct {
	Company        string `json:"company"`
	Serial         string `json:"serial"`
	Name           string `json:"name"`
	CategoryName   string `json:"categoryName"`
	NetType        string `json:"netType"`
	Client         string `json:"client"`
	Address        string `json:"address"`
	DeviceAddress  string `json:"deviceAddress"`
	ProductingDate string `json:"productingDate"` // spelling as in the standard
	Longitude      number `json:"longitude"`
	Latitude       number `json:"latitude"`
	ActiveTime     string `json:"activeTime"`
	Organization   string `json:"organizationName"`
	Area           string `json:"area"`
	Responsible    string `json:"responsible"`
	Mobile         string `json:"mobile"`
}

// DecodeInstall decodes an Install_info body into a proposed installation
// (Report.Install). The serial's form and the coordinates' ranges are
// checked; the date fields are kept as sent (their format is not fixed by
// the standard). Nothing in it is trusted: it becomes a pending ledger entry.
func DecodeInstall(body []byte) (nbiot.Report, error) {
	var s installInfo
	r, err := decodeBody(body, &s, &s.Serial, nbiot.TypeInstall)
	if err != nil {
		return r, err
	}
	if s.Longitude.set != s.Latitude.set {
		return r, fmt.Errorf("%w: longitude and latitude come together", nbiot.ErrBadValue)
	}
	if s.Longitude.set && (s.Longitude.v < -180 || s.Longitude.v > 180 || s.Latitude.v < -90 || s.Latitude.v > 90) {
		return r, fmt.Errorf("%w: coordinates %v, %v", nbiot.ErrBadValue, s.Longitude.v, s.Latitude.v)
	}
	r.Install = &nbiot.Install{
		Company: s.Company, Serial: s.Serial, Name: s.Name, Category: s.CategoryName, NetType: s.NetType,
		Client: s.Client, Address: s.Address, DeviceAddress: s.DeviceAddress, ProductionDate: s.ProductingDate,
		Longitude: s.Longitude.v, Latitude: s.Latitude.v, ActiveTime: s.ActiveTime,
		Organization: s.Organization, Area: s.Area, Responsible: s.Responsible, Mobile: s.Mobile,
	}
	return r, nil
}
