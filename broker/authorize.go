package broker

import (
	"errors"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firewatch-iot/firewatch/devices"
)

// Authorization for a broker other than the embedded one (issue 15: the NATS
// cluster's auth callout, package cluster): the same principals, secret
// check (fast path, argon2id slots, back-off), refusal counts
// (firewatch_broker_denied_total) and rate-limited log lines as a CONNECT
// to the embedded broker, and the topics the embedded broker's ACL would
// allow, as a list of MQTT topic filters that the other broker enforces.

// Grant is what an authorized client may do, as MQTT topic filters.
type Grant struct {
	// Publish lists the topics the client may publish on (no wildcards but
	// a bridge's '+').
	Publish []string
	// Subscribe lists the topic filters the client may subscribe to; a
	// trailing "/#" covers every topic below the prefix.
	Subscribe []string
}

// ErrDenied is returned by Authorize for a refused client; the refusal is
// already counted and logged.
var ErrDenied = errors.New("not authorized")

// Authorize checks a client of another MQTT broker as OnConnectAuthenticate
// checks one of the embedded broker (user name, client id = user name,
// password against the ledger in force) and returns what it may publish
// and subscribe. remote is the client's address (host or host:port) for the
// back-off of wrong secrets. Last wills are not checked here: the other
// broker must apply the publish grant to them.
func (a *Auth) Authorize(user, clientID, remote string, password []byte) (Grant, error) {
	cl := &mochi.Client{ID: clientID, Net: mochi.ClientConnection{Remote: remote}}
	var pk packets.Packet
	pk.Connect.Username = []byte(user)
	pk.Connect.Password = password
	if !a.OnConnectAuthenticate(cl, pk) {
		return Grant{}, ErrDenied
	}
	p := a.user(user)
	if p == nil { // removed between the check and now
		return Grant{}, ErrDenied
	}
	var g Grant
	switch p.role {
	case roleService:
		g.Publish, g.Subscribe = []string{"#"}, []string{"#"}
	case roleDevice:
		for _, l := range deviceLeaves {
			g.Publish = append(g.Publish, p.up+l)
		}
		g.Subscribe = []string{p.down + "#"}
	case roleGateway:
		g.Publish = []string{p.up + "batch", p.up + "status"}
		g.Subscribe = []string{p.down + "#"}
		a.mu.RLock()
		l := a.ledger
		a.mu.RUnlock()
		for i := range l.Devices {
			d := &l.Devices[i]
			if !d.Removed && d.Gateway == p.id {
				g.Publish = append(g.Publish, "fw/v1/up/"+d.ID+"/ack")
				g.Subscribe = append(g.Subscribe, "fw/v1/down/"+d.ID+"/#")
			}
		}
	case roleBridge:
		for _, l := range deviceLeaves {
			g.Publish = append(g.Publish, "fw/v1/up/+/"+l)
		}
	}
	return g, nil
}

// FollowLive makes the authentication follow lv (Adopt) where there is no
// embedded broker to close connections on (cluster mode): a removed device
// or gateway, or one whose secret changed, is refused at its next CONNECT,
// and kick, if not nil, is called (in a goroutine of its own) with their
// user names, to close the connections they hold.
func (a *Auth) FollowLive(lv *devices.Live, kick func(ids []string)) {
	lv.Subscribe(func(_, l *devices.Ledger, d *devices.Diff) {
		ids, err := a.Adopt(l, d)
		if err != nil && a.log != nil {
			a.log.Error("registry change: some entries cannot connect", "err", err)
		}
		if len(ids) > 0 && kick != nil {
			go kick(ids)
		}
	})
}
