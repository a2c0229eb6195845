package broker

import (
	"crypto/hmac"
	"crypto/sha256"
)

// Reconnect storms (issue 15): when a NATS node or the network between a
// village and firewatch fails, hundreds of devices behind one address (a
// carrier-grade NAT, one 4G router) reconnect at once with valid secrets.
// Two things keep that cheap without helping a password guesser:
//
//   - The fast path: a secret admitted once is remembered per principal as a
//     keyed hash (mac), so its next CONNECT costs a hash, not an argon2id
//     run, and is never held back by slots or back-off. In cluster mode the
//     instances share the key (cmd/firewatch derives it from the callout
//     seed) and each other's admissions (Remember, OnAdmit): whichever
//     instance answers a reconnect knows the device.
//   - An address without recent failures may have addrChecks argon2id
//     checks running or waiting at once (they queue FIFO for a slot), so a
//     cold storm from one address keeps every slot busy instead of refusing
//     all but one CONNECT at once and waiting for the devices' retries. An
//     address that has sent a wrong secret is back to one check at a time,
//     without waiting for a slot, and backs off after freeFailures.

// addrChecks is how many argon2id checks one address without recent
// failures may have running or waiting at once: enough to keep a slot
// busy while the next CONNECT waits, and no more than the free failures, so
// that concurrency gives a guesser at most as many extra tries as the
// back-off already allows.
const addrChecks = freeFailures

// mac is the keyed hash under which an admitted secret of p is remembered:
// HMAC-SHA256 of the user name, p's secret_hash (salt and key, so that an
// entry made under an old hash never matches a new one) and the secret.
func (a *Auth) mac(p *principal, secret []byte) [32]byte {
	h := hmac.New(sha256.New, a.cacheKey)
	h.Write([]byte(p.id))
	h.Write([]byte{0})
	h.Write(p.hash.salt)
	h.Write(p.hash.key)
	h.Write(secret)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Remember records that another instance (sharing this one's CacheKey)
// admitted user with the secret whose keyed hash is mac, so that its next
// CONNECT here takes the fast path. Without the key nobody can make a mac
// that any secret matches; a mac made under another secret_hash never
// matches.
func (a *Auth) Remember(user string, mac []byte) {
	if len(mac) != sha256.Size {
		return
	}
	p := a.user(user)
	if p == nil || p.role == roleService {
		return
	}
	var sum [32]byte
	copy(sum[:], mac)
	p.fast.Store(&sum)
}

// OnAdmit makes f hear of every admission of a device, gateway or bridge
// (user name, keyed hash of the secret) to share it with other instances
// (Remember). f must not block.
func (a *Auth) OnAdmit(f func(user string, mac []byte)) { a.admitted.Store(&f) }

func (a *Auth) share(user string, sum [32]byte) {
	if f := a.admitted.Load(); f != nil {
		(*f)(user, sum[:])
	}
}

// enter admits one more argon2id check from addr if it has fewer than its
// limit running or waiting: addrChecks, one if it failed recently.
func (a *Auth) enter(addr string, failed bool) bool {
	limit := addrChecks
	if failed {
		limit = 1
	}
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	if a.checking[addr] >= limit {
		return false
	}
	a.checking[addr]++
	return true
}

func (a *Auth) leave(addr string) {
	a.checkMu.Lock()
	if a.checking[addr]--; a.checking[addr] <= 0 {
		delete(a.checking, addr)
	}
	a.checkMu.Unlock()
}
