package pahoconn

import (
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// NewStore returns paho's memory store keeping its own copy of each
// outgoing PUBLISH. Set it with ClientOptions.SetStore when a client
// publishes with QoS 1 across reconnects (a failover to another broker):
// paho's own store keeps the very packet it is sending, and at a reconnect
// paho sets the DUP flag on the stored packet while a Publish that waited
// through the reconnect is writing it (a data race, paho issue #703, open
// in v1.5.1). With a copy, the reconnect marks and sends the copy.
//
// The store is paho's ordered one: at a reconnect paho sends what the store
// holds in the order its All returns, and the plain memory store returns
// map order, so a backlog went out shuffled (issue 15: a device's messages
// a minute older than one sent before them are judged a clock that went
// back, raising false 时钟异常 faults).
func NewStore() paho.Store { return copyStore{paho.NewOrderedMemoryStore()} }

type copyStore struct{ paho.Store }

// Put stores a copy of a PUBLISH: Publish persists it before it hands the
// packet to the connection's writer, so nothing writes it yet.
func (s copyStore) Put(key string, m packets.ControlPacket) {
	if p, ok := m.(*packets.PublishPacket); ok {
		cp := *p
		m = &cp
	}
	s.Store.Put(key, m)
}
