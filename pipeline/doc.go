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
//		Ack     func() // called once the message may be acknowledged; nil: when Take returns
//	}
//	type Taker interface{ Take(m Message) } // *Pipeline
//
// When Take (or the plain entry point Handle(topic, payload)) returns, the
// message's readings are in the writer's batch and the alarm events it
// caused are stored, so it may be acknowledged to its sender: a firewatch
// killed at any moment either stored them or gets the message again. Both
// are safe to call from several goroutines; messages are handled one at a
// time. The MQTT source through paho (ingest.Source) and the embedded
// broker's in-process hook (broker.InlineSource) are adapters of it
// (Handler); a protocol server (GB/T 26875.3 over TCP, NB-IoT platform
// pushes over HTTP) maps its frames onto v1 topics and payloads and calls
// Handle or Take from its connection goroutines.
//
// Hot path: handle in pipeline.go; it allocates nothing per message
// (BenchmarkPipeline).
package pipeline
