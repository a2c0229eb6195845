package sim

import (
	"strconv"
)

// Topic suffixes, indexes into device.topics.
type topic uint8

const (
	topicTelemetry topic = iota
	topicEvent
	topicStatus
	numTopics
)

var topicNames = [numTopics]string{"telemetry", "event", "status"}

// The append helpers write the payload shapes of docs/mqtt.md straight into
// the caller's buffer: the load generator calls them for every message.

// appendHead opens a message: {"ts":…,"seq":…[,"ch":…]
func appendHead(b []byte, ms int64, seq uint32, ch int) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, ms, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	if ch > 0 {
		b = append(b, `,"ch":`...)
		b = strconv.AppendInt(b, int64(ch), 10)
	}
	return b
}

// appendMetric adds one entry to the "m" object; the first one opens it.
func appendMetric(b []byte, first bool, name string, v float64, prec int) []byte {
	if first {
		b = append(b, `,"m":{"`...)
	} else {
		b = append(b, `,"`...)
	}
	b = append(b, name...)
	b = append(b, `":`...)
	return strconv.AppendFloat(b, v, 'f', prec, 64)
}

// closeMetrics closes the "m" object and the message.
func closeMetrics(b []byte) []byte { return append(b, "}}"...) }

// appendEvent adds an event and closes the message. active=true is the
// default of the contract and is left out.
func appendEvent(b []byte, name string, active bool) []byte {
	b = append(b, `,"event":"`...)
	b = append(b, name...)
	if active {
		return append(b, `"}`...)
	}
	return append(b, `","active":false}`...)
}
