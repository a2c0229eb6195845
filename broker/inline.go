package broker

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"

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
	handle func(topic string, payload []byte) error
	// handleAck, if set instead of handle, acknowledges later
	// (NewAckInlineSource, inline_ack.go).
	handleAck AckHandler
	acks      sync.Map // *mochi.Client → *ackQueue (inline_ack.go)

	// mu is held for reading while a handler runs, for writing to start
	// and stop.
	mu      sync.RWMutex
	running bool
	waits   atomic.Bool // HandlerWaits
	ready   chan struct{}
}

// NewInlineSource returns a source that passes uplink messages to h once it
// is added to the broker (AddHook) and Run.
func NewInlineSource(h ingest.Handler) *InlineSource {
	return NewCheckedInlineSource(func(topic string, payload []byte) error { h(topic, payload); return nil })
}

// NewCheckedInlineSource is NewInlineSource for a handler that may refuse
// a message (pipeline.CheckedHandler): when h returns an error, the broker
// drops the message without acknowledging it (no PUBACK), so that the
// device sends it again — to the next run of firewatch when its alarms
// could not be stored at shutdown (pipeline.ErrNotStored).
func NewCheckedInlineSource(h func(topic string, payload []byte) error) *InlineSource {
	return &InlineSource{handle: h, ready: make(chan struct{})}
}

// HandlerWaits says that the handler may wait before it returns
// (durability.mode wal: for the next group commit of the write-ahead log):
// the PUBACK of a connection's previous message is then sent before the
// handler of its next one runs, instead of being coalesced with later
// writes, which would hold it for that wait.
func (s *InlineSource) HandlerWaits() { s.waits.Store(true) }

// ID names the hook.
func (s *InlineSource) ID() string { return "firewatch-inline-source" }

// Provides says which hook methods the source implements.
func (s *InlineSource) Provides(b byte) bool {
	return b == mochi.OnPublish || b == mochi.OnWillSent || b == mochi.OnDisconnect
}

// OnPublish handles an uplink message before the broker acknowledges it.
func (s *InlineSource) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, ingest.TopicPrefix) {
		return pk, nil // firewatch's own publishes (downlink, consoles), or not uplink
	}
	if s.handleAck != nil {
		return s.takeAck(cl, pk)
	}
	if s.waits.Load() {
		// What this connection has written — the PUBACK of its last
		// message, held by the coalescing connection while its reader is
		// busy (internal/netbuf) — goes out before the handler waits, not
		// after.
		flush(cl.Net.Conn)
	}
	if !s.take(pk) {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// flush sends what c, or a connection it wraps, holds in its write buffer.
func flush(c net.Conn) {
	for c != nil {
		if f, ok := c.(interface{ Flush() error }); ok {
			f.Flush()
			return
		}
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			return
		}
		c = u.Unwrap()
	}
}

// OnWillSent handles a last will on an uplink topic.
func (s *InlineSource) OnWillSent(_ *mochi.Client, pk packets.Packet) {
	if strings.HasPrefix(pk.TopicName, ingest.TopicPrefix) {
		if s.handleAck != nil {
			s.mu.RLock()
			if s.running {
				s.handleAck(pk.TopicName, pk.Payload, noAck) // a will has no PUBACK
			}
			s.mu.RUnlock()
			return
		}
		s.take(pk)
	}
}

func (s *InlineSource) take(pk packets.Packet) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.running {
		return false
	}
	return s.handle(pk.TopicName, pk.Payload) == nil
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
