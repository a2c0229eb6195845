// Package pipeline is firewatch's per-message loop: one uplink message is
// routed by topic, decoded once (ingest), evaluated by the rules (rules),
// appended to the InfluxDB batch (Lines), and only rule transitions leave
// it, as events to the alarm manager, which it reaches through the Alarms
// interface (it does not import alarms). It also holds the glue around that
// loop: the swap of a reloaded rule engine between two messages, liveness
// and edge faults turned into alarm events, the receive clock and the
// checkpoint of rule state across restarts.
//
// # Feeding it
//
// Every source feeds the pipeline through one small interface:
//
//	type Message struct {
//		Origin  Origin // "mqtt", "broker", or a new source's name
//		Topic   string // a v1 uplink topic, fw/v1/up/... (docs/mqtt.md)
//		Payload []byte // not kept after Take returns
//		Ack     func() // called once the message may be acknowledged, possibly after Take returned; nil: Take returns then
//	}
//	type Taker interface{ Take(m Message) error } // *Pipeline
//
// When Handle returns, the message's readings are in the writer's batch
// and the alarm events it caused are stored. A message may be acknowledged
// to its sender once its readings are durable too (issue 15): with
// Options.Durability (package durable: a group-committed write-ahead log
// by default, or "written to InfluxDB or its spool" for a stream source)
// Take calls m.Ack only then — after it returned, from the tracker's
// goroutine, in the order of the Take calls — so that a source with
// asynchronous acknowledgements (paho's manual acks, a JetStream consumer)
// does not wait one fsync per message; a Take without Ack returns only
// then. A firewatch killed at any moment either has the acknowledged
// readings on disk or gets the message again. Both are safe to call from
// several goroutines; messages are handled one at a time. The MQTT source
// through paho (ingest.NewAckSource, AckHandler) and the embedded broker's
// in-process hook (broker.InlineSource, Handler) are adapters of it; a
// protocol server (GB/T 26875.3 over TCP, NB-IoT platform pushes over
// HTTP) maps its frames onto v1 topics and payloads and calls Take from its
// connection goroutines.
//
// Hot path: handle in pipeline.go; it allocates nothing per message
// (BenchmarkPipeline).
package pipeline
