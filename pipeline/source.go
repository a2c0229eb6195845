package pipeline

import (
	"context"
	"sync"
)

// Origin names the kind of source a message came from, for logs and
// metrics: OriginMQTT, OriginBroker, or a future source's own name.
type Origin string

// The origins of today's sources.
const (
	// OriginMQTT is an external broker, through the paho client
	// (ingest.Source).
	OriginMQTT Origin = "mqtt"
	// OriginBroker is the embedded broker's in-process hook
	// (broker.InlineSource).
	OriginBroker Origin = "broker"
)

// Message is one uplink message from a source.
type Message struct {
	Origin Origin
	// Topic is a v1 uplink topic (fw/v1/up/..., docs/mqtt.md); a source of
	// another protocol maps its frames onto one.
	Topic string
	// Payload is the v1 payload; the pipeline does not keep it after Take
	// returns.
	Payload []byte
	// Ack, if not nil, is called once the message may be acknowledged to
	// its sender: once its alarm events are stored and its readings are
	// durable (Options.Durability: in the fsynced write-ahead log, or
	// written to InfluxDB or the writer's on-disk spool). It may be called
	// after Take returned, from another goroutine, so that a source does
	// not wait for one fsync per message; acks come in the order of the
	// Take calls. A source whose acknowledgement is the return of Take (the
	// embedded broker acknowledges when its hook returns) leaves it nil:
	// Take then returns only once the message may be acknowledged.
	Ack func()
	// Relayed says an intermediary (an NB-IoT operator platform) pushed
	// the message on the device's behalf and may retry it late: it proves
	// the device alive at its ts, not now (liveness.go, heardAt).
	Relayed bool
	// Recv, if not zero, is when the message was received (Unix ms) by a
	// source that kept it before handing it over: the stream's time of it
	// in cluster mode (jetstream.MsgMetadata.Timestamp). Zero means now. A
	// message that waited (a partition's backlog after a takeover, an
	// owner that lagged) is judged at its arrival, as the next owner's
	// replay judges it: its device clock against Recv, a reading without a
	// believable ts standing at Recv, and liveness seeing the device at
	// Recv (learnt now). A time after now (another machine's clock ahead)
	// counts as now. MQTT carries no receive time: an external broker's
	// queued messages are judged when they reach firewatch.
	Recv int64
}

// Taker is what every source feeds. *Pipeline is one.
type Taker interface {
	// Take handles m and returns once it may be acknowledged (Handle); or
	// ErrNotStored, and m.Ack is not called: the message must not be
	// acknowledged.
	Take(m Message) error
}

// Take handles m (Handle) and calls m.Ack once the message may be
// acknowledged, possibly after Take returned; with m.Ack nil, Take returns
// only then. When the message's alarm events may not be stored (the alarm
// store failing at shutdown), m.Ack is never called and Take returns
// ErrNotStored: the source must not acknowledge the message, so that its
// sender sends it again to the next run (unacked.go).
func (p *Pipeline) Take(m Message) error {
	var err error
	if m.Relayed {
		err = p.handleRelayed(m.Topic, m.Payload, m.Recv)
	} else {
		err = p.handleAt(m.Topic, m.Payload, m.Recv)
	}
	if err != nil {
		p.notStored(m)
		return ErrNotStored
	}
	p.ackDurable(m)
	return nil
}

// ackDurable acknowledges m once what the pipeline wrote for it is
// durable: at once without a durability tracker, from the tracker when m
// has an Ack, else (a source that acknowledges when Take returns) by
// waiting here for the tracker.
func (p *Pipeline) ackDurable(m Message) {
	switch {
	case p.durable == nil:
		if m.Ack != nil {
			m.Ack()
		}
	case m.Ack != nil:
		p.durable.Await(m.Ack)
	default:
		w := waiters.Get().(*waiter)
		p.durable.Await(w.done)
		<-w.c
		waiters.Put(w)
	}
}

// Durability tells when the lines the pipeline wrote are durable
// (durable.Log, durable.Written).
type Durability interface {
	// Await calls ack once every line written before the call is
	// durable: at once or later, from another goroutine; in call order.
	Await(ack func())
}

// waiter is the ack of a Take that waits: its done is made once, so a
// waiting Take allocates nothing.
type waiter struct {
	c    chan struct{}
	done func()
}

var waiters = sync.Pool{New: func() any {
	w := &waiter{c: make(chan struct{}, 1)}
	w.done = func() { w.c <- struct{}{} }
	return w
}}

var _ Taker = (*Pipeline)(nil)

// Source delivers messages to a Taker until Run's context ends.
type Source interface {
	Run(ctx context.Context) error
	// Ready is closed once the source takes messages.
	Ready() <-chan struct{}
}

// Handler adapts t to a source that calls a function per message and
// acknowledges the message when the function returns, as
// broker.InlineSource (the embedded broker's hook) and the GB/T 26875.3
// server do: the function returns once the message may be acknowledged.
// A message that must not be acknowledged (ErrNotStored) is left to the
// source's own check of shutdown (the GB/T 26875.3 server confirms nothing
// once it stops); a source that can refuse one uses CheckedHandler.
func Handler(t Taker, o Origin) func(topic string, payload []byte) {
	return func(topic string, payload []byte) {
		t.Take(Message{Origin: o, Topic: topic, Payload: payload})
	}
}

// CheckedHandler is Handler for a source that can withhold the
// acknowledgement of one message (the embedded broker's hook: no PUBACK):
// the function returns ErrNotStored when it must.
func CheckedHandler(t Taker, o Origin) func(topic string, payload []byte) error {
	return func(topic string, payload []byte) error {
		return t.Take(Message{Origin: o, Topic: topic, Payload: payload})
	}
}

// AckHandler adapts t to a source that acknowledges a message when ack is
// called, possibly after the function returned, as ingest.Source (paho
// with manual acknowledgements) does.
func AckHandler(t Taker, o Origin) func(topic string, payload []byte, ack func()) {
	return func(topic string, payload []byte, ack func()) {
		t.Take(Message{Origin: o, Topic: topic, Payload: payload, Ack: ack})
	}
}

// CheckedAckHandler is AckHandler for a source that can withhold the
// acknowledgement of one message and acknowledges the others itself, later
// (the embedded broker's hook with a durability tracker, issue 19: its
// PUBACK is sent when ack is called, not when the hook returns). The
// function returns ErrNotStored when the message must not be
// acknowledged; ack is then never called.
func CheckedAckHandler(t Taker, o Origin) func(topic string, payload []byte, ack func()) error {
	return func(topic string, payload []byte, ack func()) error {
		return t.Take(Message{Origin: o, Topic: topic, Payload: payload, Ack: ack})
	}
}
