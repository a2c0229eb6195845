package ingest

import (
	"context"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/internal/pahoconn"
)

// TopicPrefix begins every v1 uplink topic.
const TopicPrefix = "fw/v1/up/"

// Topic is the subscription that carries every v1 uplink.
const Topic = TopicPrefix + "#"

// SourceConfig configures the MQTT source.
type SourceConfig struct {
	// Broker is the broker URL, e.g. tcp://127.0.0.1:1883.
	Broker string
	// ClientID must be fixed: the broker keeps the persistent session
	// (subscriptions and queued QoS 1 messages) under it.
	ClientID string
	Username string
	Password string
	Logger   *slog.Logger
}

// Handler receives every message on the subscription, one at a time, in
// broker order. The message is acknowledged to the broker when it returns,
// so it must have taken responsibility for the payload by then. It must not
// keep payload after returning.
type Handler func(topic string, payload []byte)

// AckHandler receives every message on the subscription, one at a time, in
// broker order, and calls ack once the message may be acknowledged to the
// broker, possibly after it returned (from another goroutine); the acks of
// successive messages must come in their order, as MQTT wants PUBACKs in
// the order of the PUBLISHes. It must not keep payload after returning.
type AckHandler func(topic string, payload []byte, ack func())

// Source subscribes to the v1 uplink topics with QoS 1 and a persistent
// session.
type Source struct {
	cfg    SourceConfig
	handle Handler
	// ackHandle, if set instead of handle, acknowledges messages itself
	// (paho's manual acknowledgements).
	ackHandle AckHandler
	log       *slog.Logger
	// ready is closed after the first successful subscription.
	ready chan struct{}
}

// NewSource returns a source that passes messages to h.
func NewSource(cfg SourceConfig, h Handler) *Source {
	if cfg.ClientID == "" {
		cfg.ClientID = "firewatch"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Source{cfg: cfg, handle: h, log: cfg.Logger, ready: make(chan struct{})}
}

// NewAckSource returns a source that passes messages to h, which
// acknowledges each when it is durable: paho's automatic acknowledgement
// is off, and the broker keeps a message unacknowledged until h's ack
// (redelivered after a reconnect if it never comes). The callback does not
// wait for the ack, so messages are not serialised behind an fsync; the
// broker's in-flight window (Mosquitto's max_inflight_messages) bounds how
// many wait.
func NewAckSource(cfg SourceConfig, h AckHandler) *Source {
	s := NewSource(cfg, nil)
	s.ackHandle = h
	return s
}

// Ready is closed once the source has subscribed for the first time.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Run connects, subscribes and delivers messages until ctx is done. It keeps
// reconnecting while the broker is away; paho resubscribes nothing on its
// own, so the subscription is renewed on every connect (the broker's
// persistent session keeps the QoS 1 messages queued meanwhile).
func (s *Source) Run(ctx context.Context) error {
	subscribed := make(chan struct{}, 1)
	first := true
	opts := paho.NewClientOptions().
		AddBroker(s.cfg.Broker).
		SetClientID(s.cfg.ClientID).
		SetUsername(s.cfg.Username).
		SetPassword(s.cfg.Password).
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoAckDisabled(s.ackHandle != nil).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetCustomOpenConnectionFn(pahoconn.Open). // buffered reads, coalesced PUBACKs (issue 19)
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.log.Warn("mqtt connection lost; reconnecting", "broker", s.cfg.Broker, "err", err)
		}).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe(Topic, 1, func(_ paho.Client, m paho.Message) {
				if s.ackHandle != nil {
					s.ackHandle(m.Topic(), m.Payload(), m.Ack)
					return
				}
				s.handle(m.Topic(), m.Payload())
			})
			// The subscribe ack arrives on paho's own goroutines; do not
			// block the connect handler waiting for it.
			go func() {
				tok.Wait()
				if err := tok.Error(); err != nil {
					s.log.Error("mqtt subscribe failed", "topic", Topic, "err", err)
					c.Disconnect(0) // auto-reconnect tries again
					return
				}
				s.log.Info("mqtt subscribed", "broker", s.cfg.Broker, "topic", Topic, "client_id", s.cfg.ClientID)
				select {
				case subscribed <- struct{}{}:
				default:
				}
			}()
		})
	client := paho.NewClient(opts)
	tok := client.Connect() // with ConnectRetry this returns only on success or Disconnect
	go func() {
		tok.Wait()
		if err := tok.Error(); err != nil {
			s.log.Error("mqtt connect failed", "broker", s.cfg.Broker, "err", err)
		}
	}()
	defer client.Disconnect(250)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-subscribed:
			if first {
				first = false
				close(s.ready)
			}
		}
	}
}
