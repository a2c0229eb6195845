package cluster

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/nats-io/nats.go"
)

// Shared admissions (issue 15, a reconnect storm from one address): the
// NATS servers hand each CONNECT to whichever instance the queue group
// picks, so a device admitted by instance a and reconnecting after a node's
// death is, half the time, checked by instance b, which has never seen its
// secret and must run argon2id, one check at a time per address. Each
// instance therefore tells the others of every admission: the user name
// and the keyed hash under which broker.Auth remembers the secret (never
// the secret), on AdmittedSubject; the others remember it, and the
// device's next CONNECT takes the fast path wherever it lands. The key is
// derived from the callout seed, which every instance holds and the
// subject never carries: a mac seen or forged on the subject admits
// nobody without it.

// AdmittedSubject carries the admissions the instances share: a 32-byte
// keyed hash followed by the user name.
const AdmittedSubject = "firewatch.auth.admitted"

// shareBuffer bounds the admissions waiting to be published: a storm
// beyond it loses some (those devices cost an argon2id run on another
// instance, as without sharing), never blocks a check.
const shareBuffer = 4096

// Remembering is what Share needs of the secret check (broker.Auth).
type Remembering interface {
	// Remember records another instance's admission.
	Remember(user string, mac []byte)
	// OnAdmit makes f hear of each admission here; f must not block.
	OnAdmit(f func(user string, mac []byte))
}

type share struct {
	auth Remembering
	out  chan []byte
}

// CacheKey is the key of the remembered secrets' hashes
// (broker.AuthConfig.CacheKey), the same on every instance: derived from
// the callout seed.
func (c *Callout) CacheKey() []byte {
	seed, _ := c.issuer.Seed()
	m := hmac.New(sha256.New, seed)
	m.Write([]byte("firewatch auth cache key v1"))
	return m.Sum(nil)
}

// Share makes Run exchange admissions with the other instances through
// the servers: auth's are published, theirs remembered by auth. auth must
// use CacheKey.
func (c *Callout) Share(auth Remembering) {
	sh := &share{auth: auth, out: make(chan []byte, shareBuffer)}
	auth.OnAdmit(func(user string, mac []byte) {
		msg := make([]byte, 0, len(mac)+len(user))
		select {
		case sh.out <- append(append(msg, mac...), user...):
		default:
		}
	})
	c.share = sh
}

// run subscribes to the others' admissions and publishes ours until stop.
func (sh *share) run(nc *nats.Conn) (stop func(), err error) {
	sub, err := nc.Subscribe(AdmittedSubject, func(m *nats.Msg) {
		if len(m.Data) > sha256.Size {
			sh.auth.Remember(string(m.Data[sha256.Size:]), m.Data[:sha256.Size])
		}
	})
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case msg := <-sh.out:
				nc.Publish(AdmittedSubject, msg) // lost while disconnected: the next check runs argon2id
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); sub.Unsubscribe() }, nil
}
