package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
)

// ErrNotStored is Take's report that a message's alarm events may not be
// stored (the alarm store failing while firewatch stops: Alarms.Sync gave
// up): the message must not be acknowledged to its sender (no PUBACK, no
// 确认, HTTP 503), which sends it again to the next run. Its readings stay
// written; InfluxDB overwrites the same point when it comes again.
var ErrNotStored = pipelineError("pipeline: alarm events not stored: message not acknowledged")

type pipelineError string

func (e pipelineError) Error() string { return string(e) }

// unackedDesc is the counter of messages left unacknowledged because
// their alarm events could not be stored (Pipeline.unacked).
var unackedDesc = prometheus.CounterOpts{
	Name: "firewatch_ingest_unacknowledged_total",
	Help: "Messages not acknowledged to their sender because their alarm events could not be stored (the alarm store failing at shutdown): the sender sends them again to the next run.",
}

// sync waits for the message's alarm events to be stored (Alarms.Sync).
func (p *Pipeline) sync() error {
	if p.alarms == nil {
		return nil
	}
	return p.alarms.Sync()
}

// notStored counts and logs a message that must not be acknowledged, and
// makes the rule engine forget its devices (rules.Engine.Forget): it
// evaluated the message, so its state says the alarm is firing and the
// message seen, and the resend — to this run or, through the checkpoint
// written at shutdown, to the next — would be dropped as a duplicate or
// raise nothing. Forgotten, the devices' next messages are evaluated
// afresh, as after a restart without a checkpoint: the resend raises the
// alarm again (a raise of an alarm still open in the store counts as its
// repeat).
func (p *Pipeline) notStored(m Message) {
	if p.unacked != nil {
		p.unacked.Inc()
	}
	p.mu.Lock()
	msgs, _ := p.dec.Decode(m.Topic, m.Payload, p.clock.now())
	devs := make([]devices.Index, 0, len(msgs))
	for i := range msgs {
		devs = append(devs, msgs[i].Device.Index)
	}
	p.eng.Forget(devs)
	p.mu.Unlock()
	p.log.Error("message NOT acknowledged: its alarm events could not be stored (alarm store failing at shutdown); the sender will send it again to the next run",
		"origin", string(m.Origin), "topic", m.Topic, "ack", m.Ack != nil)
}
