package broker

import (
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A client that connects with the client id of a connection the broker
// still holds takes that connection's session over (MQTT 3.1.4-3): a 4G
// device whose link dropped without a FIN reconnects long before its old
// connection times out. In mochi v2.7.9 the old connection's goroutine,
// ending after the takeover, may still find its session "not taken over"
// (the flag is set after the new client is on its way) and then deletes
// the client id's entry — by then the new client's — and the
// subscriptions filed under that id: every command published to the
// device afterwards was dropped without a trace until it reconnected
// again (TestReconnectKeepsSubscription lost 1–3 commands in 150
// takeovers).
//
// serialTakeover closes that race for sessions that end with their
// connection (clean sessions): once the new client is authenticated, and
// before mochi looks for its session, it ends the old connection itself
// and waits until that connection's goroutine has removed it, so that
// mochi finds no session to take over and the new client starts afresh,
// as a clean session would anyway. A persistent session is left to mochi
// (its old goroutine deletes nothing). The wait is bounded: a goroutine
// stuck longer than takeoverWait is left to mochi's own takeover.
type serialTakeover struct {
	mochi.HookBase
	s *mochi.Server
}

// takeoverWait bounds the wait for the old connection's goroutine. It
// ends within microseconds unless its last write blocks on a stalled
// link (bounded by the write deadline).
const takeoverWait = 5 * time.Second

// ID names the hook.
func (*serialTakeover) ID() string { return "firewatch-serial-takeover" }

// Provides says which hook methods serialTakeover implements.
func (*serialTakeover) Provides(b byte) bool { return b == mochi.OnSessionEstablish }

// OnSessionEstablish runs after the new client's CONNECT passed the
// authentication hook (an unauthenticated client can end no one's
// connection) and before mochi inherits a session.
func (h *serialTakeover) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	old, ok := h.s.Clients.Get(cl.ID)
	if !ok || old == cl || !endsWithConnection(old) {
		return
	}
	_ = h.s.DisconnectClient(old, packets.ErrSessionTakenOver)
	deadline := time.Now().Add(takeoverWait)
	for pause := 50 * time.Microsecond; time.Now().Before(deadline); pause = min(2*pause, 5*time.Millisecond) {
		if c, ok := h.s.Clients.Get(cl.ID); !ok || c != old {
			return
		}
		time.Sleep(pause)
	}
}

// endsWithConnection reports whether cl's session ends with its
// connection, as mochi decides when the connection ends.
func endsWithConnection(cl *mochi.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}
