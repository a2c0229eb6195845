// Package ingest turns what devices send into readings: the MQTT source
// (paho, QoS 1, persistent session), the topic and payload decoder of the v1
// contract (docs/mqtt.md), and the counting of everything it rejects.
// The InfluxDB sink lives in ingest/influx.
package ingest
