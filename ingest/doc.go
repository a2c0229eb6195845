// Package ingest turns what devices send into readings: the topic and
// payload decoder of the v1 MQTT contract (docs/mqtt.md, Decoder), the MQTT
// source that subscribes to an external broker (paho, QoS 1, persistent
// session, Source), and the counting and rate-limited logging of everything
// it rejects (Stats).
//
// The subpackages hold the other codecs and the sink: gb26875 (GB/T 26875.3
// user information transmission frames) and its stream layer, nbiot (NB-IoT
// platform pushes), and influx (the InfluxDB line-protocol sink). The
// embedded broker and its in-process source are package broker; the Modbus
// master of the edge gateway is gateway/modbus.
package ingest
