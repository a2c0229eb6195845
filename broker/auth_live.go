package broker

import (
	"errors"
	"fmt"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/firewatch-iot/firewatch/devices"
)

// Live registry changes (issue 18): a device or gateway added to the
// registry with a secret can connect at once; one removed, or whose secret
// changed, is refused at its next CONNECT, and a connection it holds is
// closed (Disconnect), so that its publishes stop at once rather than at
// its next reconnect. Until the connection is closed its publishes are
// refused by the ACL too: the principal is gone.

// ErrRemoved is the reason a connection of a principal removed from the
// registry (or whose secret changed) is closed.
var ErrRemoved = errors.New("removed from the registry or secret changed")

// user returns the principal of user name u, nil if none.
func (a *Auth) user(u string) *principal {
	a.mu.RLock()
	p := a.users[u]
	a.mu.RUnlock()
	return p
}

// Adopt follows a change d of the registry that made l: the devices and
// gateways it adds or edits get their principal from l (an unchanged
// secret keeps the principal and its cached check), those it removes lose
// theirs. It returns the user names whose connection must be closed (a
// principal removed or its secret changed) and every entry refused (a
// malformed secret_hash, a reserved id), which cannot connect.
func (a *Auth) Adopt(l *devices.Ledger, d *devices.Diff) (kick []string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var probs []string
	set := func(p *principal, hash string) {
		old := a.users[p.id]
		if old != nil && (old.role == roleService || old.role == roleBridge) {
			probs = append(probs, fmt.Sprintf("%s: user name taken by the %s", p.id, map[role]string{roleService: "service", roleBridge: "bridge"}[old.role]))
			return
		}
		if old != nil && old.role != p.role {
			// A device and a gateway of one id: the registry refuses it;
			// keep the one there was.
			probs = append(probs, fmt.Sprintf("%s: user name used twice (a device and a gateway?)", p.id))
			return
		}
		if hash == "" {
			if old != nil {
				delete(a.users, p.id)
				kick = append(kick, p.id)
			}
			return
		}
		h, err := parseSecretHash(hash)
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s: %v", p.id, err))
			if old != nil {
				delete(a.users, p.id)
				kick = append(kick, p.id)
			}
			return
		}
		if old != nil && old.hash.equal(h) {
			return // same secret: keep the cached check
		}
		p.hash = h
		a.users[p.id] = p
		if old != nil {
			kick = append(kick, p.id)
		}
	}
	remove := func(id string, r role) {
		if p := a.users[id]; p != nil && p.role == r {
			delete(a.users, id)
			kick = append(kick, id)
		}
	}
	for _, is := range [][]devices.Index{d.Added, d.Edited} {
		for _, i := range is {
			dv := &l.Devices[i]
			if dv.Removed {
				continue
			}
			if dv.ID == "gw" || dv.ID == "station" {
				probs = append(probs, fmt.Sprintf("%s: device id reserved for the second topic level (docs/mqtt.md)", dv.ID))
				continue
			}
			set(&principal{role: roleDevice, id: dv.ID, up: "fw/v1/up/" + dv.ID + "/", down: "fw/v1/down/" + dv.ID + "/"}, dv.SecretHash)
		}
	}
	for _, i := range d.Removed {
		if int(i) < len(l.Devices) {
			remove(l.Devices[i].ID, roleDevice)
		}
	}
	for _, id := range d.Gateways {
		if g := l.Gateways[id]; g != nil {
			set(&principal{role: roleGateway, id: g.ID, up: "fw/v1/up/gw/" + g.ID + "/", down: "fw/v1/down/gw/" + g.ID + "/"}, g.SecretHash)
		} else {
			remove(id, roleGateway)
		}
	}
	a.ledger = l
	if len(probs) > 0 {
		err = fmt.Errorf("embedded broker credentials of the registry change:\n  %s", strings.Join(probs, "\n  "))
	}
	return kick, err
}

// equal reports whether h and o are the same hash.
func (h secretHash) equal(o secretHash) bool {
	return string(h.salt) == string(o.salt) && string(h.key) == string(o.key) &&
		h.time == o.time && h.memory == o.memory && h.threads == o.threads
}

// Disconnect closes the connections of the clients ids (client id = user
// name) on srv, if connected.
func Disconnect(srv *mochi.Server, ids []string) int {
	n := 0
	for _, id := range ids {
		if cl, ok := srv.Clients.Get(id); ok && !cl.Closed() {
			cl.Stop(ErrRemoved)
			n++
		}
	}
	return n
}

// Follow makes the embedded broker's authentication follow lv (Adopt)
// and close, on srv, the connections Adopt names. Subscribe it after the
// pipeline (a new device must not publish before the pipeline knows it).
func (a *Auth) Follow(lv *devices.Live, srv *mochi.Server) {
	lv.Subscribe(func(_, l *devices.Ledger, d *devices.Diff) {
		kick, err := a.Adopt(l, d)
		if err != nil && a.log != nil {
			a.log.Error("registry change: some entries cannot connect to the embedded broker", "err", err)
		}
		if n := Disconnect(srv, kick); n > 0 && a.log != nil {
			a.log.Info("registry change: connections of removed devices or gateways, or of changed secrets, closed", "clients", n)
		}
	})
}
