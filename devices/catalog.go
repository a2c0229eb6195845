package devices

import "fmt"

// Kind is a device kind. The zero value is invalid.
type Kind uint8

// Device kinds.
const (
	KindInvalid    Kind = iota
	KindElectrical      // electrical-fire monitor (电气火灾监控探测器)
	KindSmoke           // standalone smoke detector (独立式感烟火灾探测报警器), often NB-IoT
	KindHydrant         // hydrant / sprinkler pressure sensor (消火栓/喷淋水压)
	KindCharger         // e-bike charging cabinet (电动自行车充电柜)
	KindFacility        // building fire facility point behind a UITD (建筑消防设施, GB/T 26875.3; docs/gb26875.md)
	NumKinds            // number of kind slots, for arrays indexed by Kind
)

var kindNames = [NumKinds]string{"", "electrical", "smoke", "hydrant", "charger", "facility"}

var kindZH = [NumKinds]string{"", "电气火灾监控探测器", "独立式感烟火灾探测报警器", "消火栓水压监测装置", "电动自行车充电柜", "建筑消防设施"}

// String returns the kind's name as used in YAML, topics and InfluxDB.
func (k Kind) String() string {
	if k >= NumKinds {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// ZH returns the Chinese device name shown to dispatchers.
func (k Kind) ZH() string {
	if k >= NumKinds {
		return ""
	}
	return kindZH[k]
}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, error) {
	for k := KindElectrical; k < NumKinds; k++ {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return KindInvalid, fmt.Errorf("unknown device kind %q (want electrical, smoke, hydrant, charger or facility)", s)
}

// Metric identifies a metric or event of the catalog. It indexes Catalog.
// The zero value is invalid.
type Metric uint16

// MetricInfo describes one metric or event of the catalog.
type MetricInfo struct {
	Name string
	Kind Kind
	// Unit is the physical unit ("mA", "°C", "MPa", ...), or "event" for events.
	Unit string
	// Event is true for discrete events (smoke_alarm, tamper, ...). An event
	// reading carries 1 when the condition starts and 0 when it ends.
	Event bool
	// Channels is how many channels (cable sensors, charging slots, phases) a
	// device of this kind may report for the metric; 1 for unchannelled ones.
	Channels uint8
	// Min and Max bound the physically plausible values; readings outside are
	// rejected as absurd.
	Min, Max float64
	// ZH is the Chinese name used in dispatcher texts.
	ZH string
}

// MaxChannels is the largest channel count in the catalog: the slots of
// a charging cabinet. Catalog maxima follow common products (four cable
// sensors per electrical-fire detector, 10 or 12 slots per cabinet); a
// device with fewer says so in the ledger (channels:).
const MaxChannels = 12

// Catalog lists every metric and event by kind, with units (DOMAIN.md).
// Index 0 is unused so that the zero Metric is invalid. The order is part of
// nothing external: refer to metrics by name outside the process.
var Catalog = []MetricInfo{
	{},
	// electrical
	{Name: "residual_current_ma", Kind: KindElectrical, Unit: "mA", Channels: 1, Min: 0, Max: 10000, ZH: "剩余电流"},
	{Name: "cable_temp_c", Kind: KindElectrical, Unit: "°C", Channels: 4, Min: -40, Max: 300, ZH: "线缆温度"},
	{Name: "phase_current_a", Kind: KindElectrical, Unit: "A", Channels: 3, Min: 0, Max: 2000, ZH: "相电流"},
	{Name: "voltage_v", Kind: KindElectrical, Unit: "V", Channels: 3, Min: 0, Max: 500, ZH: "电压"},
	{Name: "fault", Kind: KindElectrical, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "设备故障"},
	// smoke
	{Name: "smoke_alarm", Kind: KindSmoke, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "烟雾报警"},
	{Name: "tamper", Kind: KindSmoke, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "防拆报警"},
	{Name: "low_battery", Kind: KindSmoke, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "电池欠压"},
	{Name: "fault", Kind: KindSmoke, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "设备故障"},
	{Name: "self_test", Kind: KindSmoke, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "自检"},
	{Name: "silence", Kind: KindSmoke, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "消音"},
	{Name: "heartbeat", Kind: KindSmoke, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "心跳"},
	// hydrant
	{Name: "pressure_mpa", Kind: KindHydrant, Unit: "MPa", Channels: 1, Min: -0.1, Max: 10, ZH: "水压"},
	{Name: "tilt", Kind: KindHydrant, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "倾斜/撞击"},
	// charger
	{Name: "slot_temp_c", Kind: KindCharger, Unit: "°C", Channels: MaxChannels, Min: -40, Max: 300, ZH: "充电口温度"},
	{Name: "slot_current_a", Kind: KindCharger, Unit: "A", Channels: MaxChannels, Min: 0, Max: 100, ZH: "充电口电流"},
	{Name: "slot_power_w", Kind: KindCharger, Unit: "W", Channels: MaxChannels, Min: 0, Max: 20000, ZH: "充电口功率"},
	{Name: "smoke", Kind: KindCharger, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "柜内烟雾"},
	{Name: "door_open", Kind: KindCharger, Unit: "event", Event: true, Channels: MaxChannels, Max: 1, ZH: "柜门打开"},
	{Name: "power_cut", Kind: KindCharger, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "断电"},
	// every kind: device status
	{Name: "battery_pct", Kind: KindSmoke, Unit: "%", Channels: 1, Min: 0, Max: 100, ZH: "电池电量"},
	{Name: "battery_pct", Kind: KindHydrant, Unit: "%", Channels: 1, Min: 0, Max: 100, ZH: "电池电量"},
	{Name: "rssi_dbm", Kind: KindElectrical, Unit: "dBm", Channels: 1, Min: -150, Max: 0, ZH: "信号强度"},
	{Name: "rssi_dbm", Kind: KindSmoke, Unit: "dBm", Channels: 1, Min: -150, Max: 0, ZH: "信号强度"},
	{Name: "rssi_dbm", Kind: KindHydrant, Unit: "dBm", Channels: 1, Min: -150, Max: 0, ZH: "信号强度"},
	{Name: "rssi_dbm", Kind: KindCharger, Unit: "dBm", Channels: 1, Min: -150, Max: 0, ZH: "信号强度"},
	// facility (建筑消防设施): a point of a fire alarm controller, or the UITD (用户信息传输装置) itself,
	// reported over GB/T 26875.3 (ingest/gb26875/server); analog values as in its Table 6.
	{Name: "fire_alarm", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "火警"},
	{Name: "fault", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "故障"},
	{Name: "supervisory", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "监管报警"},
	{Name: "disabled", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "屏蔽"},
	{Name: "started", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "启动"},
	{Name: "feedback", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "反馈"},
	{Name: "delay", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "延时"},
	{Name: "power_fault", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "电源故障"},
	{Name: "main_power_fault", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "主电故障"},
	{Name: "backup_power_fault", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "备电故障"},
	{Name: "bus_fault", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "总线故障"},
	{Name: "link_fault", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "与监控中心通信故障"},
	{Name: "line_fault", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "监测连接线路故障"},
	{Name: "heartbeat", Kind: KindFacility, Unit: "event", Event: true, Channels: 1, Max: 1, ZH: "巡检"},
	{Name: "event_count", Kind: KindFacility, Unit: "件", Channels: 1, Min: 0, Max: 32000, ZH: "事件数"},
	{Name: "height_m", Kind: KindFacility, Unit: "m", Channels: 1, Min: 0, Max: 320, ZH: "高度"},
	{Name: "temperature_c", Kind: KindFacility, Unit: "°C", Channels: 1, Min: -273, Max: 3200, ZH: "温度"},
	{Name: "pressure_mpa", Kind: KindFacility, Unit: "MPa", Channels: 1, Min: 0, Max: 3200, ZH: "压力"},
	{Name: "pressure_kpa", Kind: KindFacility, Unit: "kPa", Channels: 1, Min: 0, Max: 3200, ZH: "压力"},
	{Name: "gas_lel_pct", Kind: KindFacility, Unit: "%LEL", Channels: 1, Min: 0, Max: 100, ZH: "气体浓度"},
	{Name: "time_s", Kind: KindFacility, Unit: "s", Channels: 1, Min: 0, Max: 32000, ZH: "时间"},
	{Name: "voltage_v", Kind: KindFacility, Unit: "V", Channels: 1, Min: 0, Max: 3200, ZH: "电压"},
	{Name: "current_a", Kind: KindFacility, Unit: "A", Channels: 1, Min: 0, Max: 3200, ZH: "电流"},
	{Name: "flow_l_s", Kind: KindFacility, Unit: "L/s", Channels: 1, Min: 0, Max: 3200, ZH: "流量"},
	{Name: "air_volume_m3_min", Kind: KindFacility, Unit: "m³/min", Channels: 1, Min: 0, Max: 3200, ZH: "风量"},
	{Name: "wind_speed_m_s", Kind: KindFacility, Unit: "m/s", Channels: 1, Min: 0, Max: 20, ZH: "风速"},
}

// NumMetrics is the number of Metric slots (len(Catalog)).
var NumMetrics = len(Catalog)

// kindMetrics lists the metrics of each kind, for the decoder's name lookup.
var kindMetrics [NumKinds][]Metric

func init() {
	for i := 1; i < len(Catalog); i++ {
		k := Catalog[i].Kind
		kindMetrics[k] = append(kindMetrics[k], Metric(i))
	}
}

// Info returns the catalog entry of m.
func (m Metric) Info() *MetricInfo { return &Catalog[m] }

// String returns the metric's name.
func (m Metric) String() string {
	if int(m) >= len(Catalog) {
		return fmt.Sprintf("metric(%d)", uint16(m))
	}
	return Catalog[m].Name
}

// Metrics returns the metrics and events of kind k. The slice is shared: do
// not modify it.
func (k Kind) Metrics() []Metric {
	if k >= NumKinds {
		return nil
	}
	return kindMetrics[k]
}

// LookupMetric returns the metric of kind k whose name is name. It does not
// allocate: the decoder calls it per field with a slice of the payload.
func LookupMetric(k Kind, name []byte) (Metric, bool) {
	if k >= NumKinds {
		return 0, false
	}
	for _, m := range kindMetrics[k] {
		if Catalog[m].Name == string(name) {
			return m, true
		}
	}
	return 0, false
}

// MetricByName is LookupMetric for a string, for configuration loading.
func MetricByName(k Kind, name string) (Metric, bool) { return LookupMetric(k, []byte(name)) }
