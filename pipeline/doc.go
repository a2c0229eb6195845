// Package pipeline is firewatch's per-message loop: one uplink message is
// routed by topic, decoded once (ingest), evaluated by the rules (rules),
// appended to the InfluxDB batch, and only rule transitions leave it, as
// events to the alarm manager, which it reaches through the Alarms
// interface. It also holds the glue around that loop: the swap of a
// reloaded rule engine between two messages, liveness and edge faults
// turned into alarm events, the receive clock and the checkpoint of rule
// state across restarts.
package pipeline
