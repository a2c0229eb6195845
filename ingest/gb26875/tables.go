package gb26875

// SystemTypeName is the Chinese name of a system type (Table 4), "" for reserved and user-defined values.
func SystemTypeName(t byte) string { return systemTypes[t] }

// ComponentTypeName is the Chinese name of a component type (Table 5), "" for reserved and user-defined
// values.
func ComponentTypeName(t byte) string { return componentTypes[t] }

var systemTypes = [256]string{
	0: "通用", 1: "火灾报警系统", 10: "消防联动控制器", 11: "消火栓系统", 12: "自动喷水灭火系统",
	13: "气体灭火系统", 14: "水喷雾灭火系统（泵启动方式）", 15: "水喷雾灭火系统（压力容器启动方式）",
	16: "泡沫灭火系统", 17: "干粉灭火系统", 18: "防烟排烟系统", 19: "防火门及卷帘系统", 20: "消防电梯",
	21: "消防应急广播", 22: "消防应急照明和疏散指示系统", 23: "消防电源", 24: "消防电话",
}

var componentTypes = [256]string{
	0: "通用", 1: "火灾报警控制器",
	10: "可燃气体探测器", 11: "点型可燃气体探测器", 12: "独立式可燃气体探测器", 13: "线型可燃气体探测器",
	16: "电气火灾监控报警器", 17: "剩余电流式电气火灾监控探测器", 18: "测温式电气火灾监控探测器",
	21: "探测回路", 22: "火灾显示盘", 23: "手动火灾报警按钮", 24: "消火栓按钮", 25: "火灾探测器",
	30: "感温火灾探测器", 31: "点型感温火灾探测器", 32: "点型感温火灾探测器（S型）",
	33: "点型感温火灾探测器（R型）", 34: "线型感温火灾探测器", 35: "线型感温火灾探测器（S型）",
	36: "线型感温火灾探测器（R型）", 37: "光纤感温火灾探测器",
	40: "感烟火灾探测器", 41: "点型离子感烟火灾探测器", 42: "点型光电感烟火灾探测器",
	43: "线型光束感烟火灾探测器", 44: "吸气式感烟火灾探测器",
	50: "复合式火灾探测器", 51: "复合式感烟感温火灾探测器", 52: "复合式感光感温火灾探测器",
	53: "复合式感光感烟火灾探测器",
	61: "紫外火焰探测器", 62: "红外火焰探测器", 69: "感光火灾探测器", 74: "气体探测器",
	78: "图像摄像方式火灾探测器", 79: "感声火灾探测器",
	81: "气体灭火控制器", 82: "消防电气控制装置", 83: "消防控制室图形显示装置", 84: "模块", 85: "输入模块",
	86: "输出模块", 87: "输入/输出模块", 88: "中继模块",
	91: "消防水泵", 92: "消防水箱", 95: "喷淋泵", 96: "水流指示器", 97: "信号阀", 98: "报警阀", 99: "压力开关",
	101: "阀驱动装置", 102: "防火门", 103: "防火阀", 104: "通风空调", 105: "泡沫液泵", 106: "管网电磁阀",
	111: "防烟排烟风机", 113: "排烟防火阀", 114: "常闭送风口", 115: "排烟口", 116: "电控挡烟垂壁",
	117: "防火卷帘控制器", 118: "防火门监控器", 121: "警报装置",
}

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
