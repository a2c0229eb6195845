package devices

// Reading is one decoded value: a metric or event of one device at one
// device time. It is small and passed by value on the hot path.
type Reading struct {
	// Time is the device's timestamp in Unix milliseconds.
	Time   int64
	Value  float64
	Seq    uint32
	Device Index
	Metric Metric
	Kind   Kind
	// Channel is the cable channel, charging slot or phase (1-based), or 0
	// for an unchannelled metric.
	Channel uint8
}
