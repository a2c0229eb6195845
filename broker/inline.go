package broker

import (
	"context"
	"strings"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firewatch-iot/firewatch/ingest"
)

// InlineSource takes the v1 uplink straight from the embedded broker, as a
// broker hook, instead of through an MQTT client on loopback. A message is
// handled in the publishing connection's goroutine after the broker's ACL
// check and before the broker acknowledges it (PUBACK) to the device, so
// the device's own QoS 1 retry covers a firewatch that dies before the
// handler returned; and a device cannot publish faster than firewatch
// takes its messages. Handlers of different connections run at the same
// time (the pipeline orders them), so that one device's wait for its
// readings to be durable (durability.mode wal: a group commit) does not
// hold back the others; a connection's messages are handled in order. Last
// wills on uplink topics (a gateway's status) are handled when sent; mochi
// does not check a will against the ACL when it sends it, so Auth checks
// it at CONNECT.
//
// Before Run and after it returns, uplink messages are refused without an
// acknowledgement, so that the device sends them again once firewatch
// takes messages.
type InlineSource struct {
	mochi.HookBase
	handle ingest.Handler

	// mu is held for reading while a handler runs, for writing to start
	// and stop.
	mu      sync.RWMutex
	running bool
	ready   chan struct{}
}

// NewInlineSource returns a source that passes uplink messages to h once it
// is added to the broker (AddHook) and Run.
func NewInlineSource(h ingest.Handler) *InlineSource {
	return &InlineSource{handle: h, ready: make(chan struct{})}
}

// ID names the hook.
func (s *InlineSource) ID() string { return "firewatch-inline-source" }

// Provides says which hook methods the source implements.
func (s *InlineSource) Provides(b byte) bool { return b == mochi.OnPublish || b == mochi.OnWillSent }

// OnPublish handles an uplink message before the broker acknowledges it.
func (s *InlineSource) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, ingest.TopicPrefix) {
		return pk, nil // firewatch's own publishes (downlink, consoles), or not uplink
	}
	if !s.take(pk) {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// OnWillSent handles a last will on an uplink topic.
func (s *InlineSource) OnWillSent(_ *mochi.Client, pk packets.Packet) {
	if strings.HasPrefix(pk.TopicName, ingest.TopicPrefix) {
		s.take(pk)
	}
}

func (s *InlineSource) take(pk packets.Packet) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.running {
		return false
	}
	s.handle(pk.TopicName, pk.Payload)
	return true
}

// Ready is closed once Run has started taking messages.
func (s *InlineSource) Ready() <-chan struct{} { return s.ready }

// Run takes messages until ctx ends, and returns once the message being
// handled, if any, is done.
func (s *InlineSource) Run(ctx context.Context) error {
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	close(s.ready)
	<-ctx.Done()
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	return nil
}
