package devices

import "fmt"

// MapTarget checks the target of one entry of a mapping from a device's own
// data to the catalog — a point of a firegate register map, a field of an
// NB-IoT product codec — that names metric name of kind in unit on channel
// ch (0: none). ok is false when the metric is not in the catalog; problems
// are the entry's other faults (a unit other than the catalog's, a channel
// out of range), each a message for the entry's line.
func MapTarget(kind Kind, name, unit string, ch int) (m Metric, problems []string, ok bool) {
	m, ok = MetricByName(kind, name)
	if !ok {
		return m, []string{fmt.Sprintf("metric %q is not in the catalog for kind %s (see docs/mqtt.md)", name, kind)}, false
	}
	info := m.Info()
	if unit != info.Unit {
		problems = append(problems, fmt.Sprintf("%s: unit %q, but the catalog's unit is %q: convert with scale", name, unit, info.Unit))
	}
	switch {
	case info.Channels == 1 && ch != 0:
		problems = append(problems, fmt.Sprintf("%s has no channels: remove ch", name))
	case ch < 0 || ch > int(info.Channels):
		problems = append(problems, fmt.Sprintf("%s: ch %d outside 1…%d", name, ch, info.Channels))
	}
	return m, problems, true
}
