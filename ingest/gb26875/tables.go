package gb26875

import "github.com/firewatch-iot/firewatch/internal/gbnames"

// SystemTypeName is the Chinese name of a system type (Table 4), "" for reserved and user-defined values.
func SystemTypeName(t byte) string { return gbnames.SystemType(t) }

// ComponentTypeName is the Chinese name of a component type (Table 5), "" for reserved and user-defined
// values.
func ComponentTypeName(t byte) string { return gbnames.ComponentType(t) }

// AnalogType is the type of an analog value (Table 6).
type AnalogType byte

// AnalogInfo describes an analog type: a metric name for InfluxDB, its unit, the resolution of one raw
// step (最小计量单元) and the valid range in engineering units.
type AnalogInfo struct {
	Metric     string
	Unit       string
	Resolution float64
	Min, Max   float64
}

var analogTypes = [13]AnalogInfo{
	1:  {"event_count", "件", 1, 0, 32000},
	2:  {"height_m", "m", 0.01, 0, 320},
	3:  {"temperature_c", "°C", 0.1, -273, 3200},
	4:  {"pressure_mpa", "MPa", 0.1, 0, 3200},
	5:  {"pressure_kpa", "kPa", 0.1, 0, 3200},
	6:  {"gas_lel_pct", "%LEL", 0.1, 0, 100},
	7:  {"time_s", "s", 1, 0, 32000},
	8:  {"voltage_v", "V", 0.1, 0, 3200},
	9:  {"current_a", "A", 0.1, 0, 3200},
	10: {"flow_l_s", "L/s", 0.1, 0, 3200},
	11: {"air_volume_m3_min", "m³/min", 0.1, 0, 3200},
	12: {"wind_speed_m_s", "m/s", 1, 0, 20},
}

// Info describes t; ok is false for unused (0), reserved and user-defined types.
func (t AnalogType) Info() (info AnalogInfo, ok bool) {
	if t == 0 || int(t) >= len(analogTypes) {
		return AnalogInfo{}, false
	}
	return analogTypes[t], true
}

// Value is the engineering value of a (raw × resolution) and whether it is inside the type's valid range
// (the range read in engineering units; see docs/gb26875.md). ok is false for types without a definition.
func (a Analog) Value() (v float64, inRange, ok bool) {
	info, ok := a.Kind.Info()
	if !ok {
		return float64(a.Raw), false, false
	}
	v = float64(a.Raw) * info.Resolution
	return v, v >= info.Min && v <= info.Max, true
}
