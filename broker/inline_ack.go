package broker

import (
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Issue 19: with a durability tracker (durability.mode wal or written) a
// message may be acknowledged only after its readings are durable, which
// is up to a group commit later. Holding the connection's reader in the
// hook for that wait (NewCheckedInlineSource with HandlerWaits) let one
// connection carry one message per commit, a few hundred a second (a
// bridge, a busy gateway), and cost every message a sleep and a wake-up of
// its reader. An AckInlineSource hands the message to the pipeline in the
// hook as before (the pipeline, its rules and its alarm events run before
// the hook returns), but sends the PUBACK itself, from the tracker, once
// the message is durable; the reader goes on to the connection's next
// packet meanwhile.

// AckHandler takes an uplink message and calls ack once it may be
// acknowledged, possibly after it returned, from another goroutine, in
// the order of the calls (pipeline.CheckedAckHandler). An error means the
// message must not be acknowledged; ack is then never called.
type AckHandler func(topic string, payload []byte, ack func()) error

// NewAckInlineSource is NewCheckedInlineSource for a handler that
// acknowledges a message later (AckHandler): the broker sends a QoS 1
// message's PUBACK when the handler calls ack, not when the hook returns.
// The message still reaches the broker's own subscribers of its topic (at
// QoS 0: the broker no longer holds it for a PUBACK of its own).
func NewAckInlineSource(h AckHandler) *InlineSource {
	return &InlineSource{handleAck: h, ready: make(chan struct{})}
}

// takeAck hands pk to the ack handler; the returned packet is what mochi
// goes on with: at QoS 0, so that mochi sends no PUBACK of its own.
func (s *InlineSource) takeAck(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	ack := noAck
	var a *puback
	if pk.FixedHeader.Qos > 0 {
		a = pubacks.Get().(*puback)
		a.q, a.id = s.ackQueue(cl), pk.PacketID
		ack = a.send
	}
	s.mu.RLock()
	ok := s.running && s.handleAck(pk.TopicName, pk.Payload, ack) == nil
	s.mu.RUnlock()
	if !ok {
		if a != nil {
			a.q = nil
			pubacks.Put(a)
		}
		return pk, packets.ErrRejectPacket // no PUBACK: the device sends it again
	}
	pk.FixedHeader.Qos = 0
	return pk, nil
}

func noAck() {}

// ackQueue returns cl's queue of PUBACKs, made at its first QoS 1 message.
func (s *InlineSource) ackQueue(cl *mochi.Client) *ackQueue {
	if q, ok := s.acks.Load(cl); ok {
		return q.(*ackQueue)
	}
	q, _ := s.acks.LoadOrStore(cl, &ackQueue{cl: cl})
	return q.(*ackQueue)
}

// OnDisconnect forgets the client's PUBACK queue (acks still under way
// hold it and find the client closed).
func (s *InlineSource) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	if s.handleAck != nil {
		s.acks.Delete(cl)
	}
}

// puback is the pending acknowledgement of one QoS 1 message; pooled, with
// its send made once, so that a message allocates none.
type puback struct {
	q    *ackQueue
	id   uint16
	send func()
}

var pubacks sync.Pool

func init() {
	pubacks.New = func() any {
		a := &puback{}
		a.send = a.write
		return a
	}
}

func (a *puback) write() {
	q, id := a.q, a.id
	a.q = nil
	pubacks.Put(a)
	q.push(id)
}

// ackQueue holds one client's PUBACKs, in order, for a goroutine of its
// own to write: the tracker that calls the acks (the write-ahead log's
// committer, for every connection) must not wait for one client's socket
// or its lock (mochi holds it while it writes to a stalled link). The
// goroutine runs while PUBACKs wait, and writes all that wait in one write.
type ackQueue struct {
	cl *mochi.Client

	mu      sync.Mutex
	ids     []uint16
	spare   []uint16 // the drain's, swapped with ids
	running bool
	buf     []byte // the drain's
}

func (q *ackQueue) push(id uint16) {
	q.mu.Lock()
	q.ids = append(q.ids, id)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.drain()
	}
}

// drain writes the waiting PUBACKs until none waits. A PUBACK of success
// is the same four bytes in MQTT 3.1.1 and 5 (a reason code of 0 and no
// properties may be left out, MQTT 5 3.4.2.1): 0x40, 2, the packet id. A
// client closed meanwhile gets none: its device sends those messages again.
func (q *ackQueue) drain() {
	for {
		q.mu.Lock()
		ids := q.ids
		if len(ids) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.ids, q.spare = q.spare[:0], ids
		q.mu.Unlock()
		b := q.buf[:0]
		for _, id := range ids {
			b = append(b, packets.Puback<<4, 2, byte(id>>8), byte(id))
		}
		q.buf = b
		if !q.cl.Closed() && q.cl.Net.Conn != nil {
			q.cl.Lock() // as mochi's own writes: whole packets, one writer at a time
			q.cl.Net.Conn.Write(b)
			q.cl.Unlock()
		}
	}
}
