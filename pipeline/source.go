package pipeline

import "context"

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
	// its sender, before Take returns. A source whose acknowledgement is
	// the return of Take (paho acknowledges when its callback returns, the
	// embedded broker when its hook returns) leaves it nil.
	Ack func()
	// Relayed says an intermediary (an NB-IoT operator platform) pushed
	// the message on the device's behalf and may retry it late: it proves
	// the device alive at its ts, not now (liveness.go, heardAt).
	Relayed bool
}

// Taker is what every source feeds. *Pipeline is one.
type Taker interface {
	// Take handles m and returns once it may be acknowledged (Handle).
	Take(m Message)
}

// Take handles m (Handle) and then calls m.Ack.
func (p *Pipeline) Take(m Message) {
	if m.Relayed {
		p.handleRelayed(m.Topic, m.Payload)
	} else {
		p.Handle(m.Topic, m.Payload)
	}
	if m.Ack != nil {
		m.Ack()
	}
}

var _ Taker = (*Pipeline)(nil)

// Source delivers messages to a Taker until Run's context ends.
type Source interface {
	Run(ctx context.Context) error
	// Ready is closed once the source takes messages.
	Ready() <-chan struct{}
}

// Handler adapts t to a source that calls a function per message and
// acknowledges the message when the function returns, as ingest.Source
// (paho) and broker.InlineSource (the embedded broker's hook) do.
func Handler(t Taker, o Origin) func(topic string, payload []byte) {
	return func(topic string, payload []byte) {
		t.Take(Message{Origin: o, Topic: topic, Payload: payload})
	}
}
