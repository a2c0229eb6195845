package alarms

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Push request headers.
const (
	HeaderTimestamp      = "X-Firewatch-Timestamp"
	HeaderSignature      = "X-Firewatch-Signature"
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderRecipient names the receiver a push is for (a station id, or
	// RecipientBrigade); HeaderSignatureV2 carries its per-recipient
	// signatures (SignFor, docs/dispatch.md).
	HeaderRecipient   = "X-Firewatch-Recipient"
	HeaderSignatureV2 = "X-Firewatch-Signature-V2"
)

// RecipientBrigade is the recipient of pushes to alarms.brigade_endpoint.
const RecipientBrigade = "brigade"

// MinSecretLen is the shortest signing secret accepted (alarms.secret).
const MinSecretLen = 16

// ErrBadSignature is returned by Verify when a signature does not match.
var ErrBadSignature = errors.New("bad webhook signature")

// Sign returns the signature of a push: "sha256=" and the hex HMAC-SHA256,
// keyed with secret, of timestamp, ".", body. Signing the timestamp lets a
// receiver reject replays of old requests.
func Sign(secret []byte, timestamp string, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, timestamp, body))
}

// Verify checks signature against timestamp and body in constant time. It
// does not judge the timestamp's age: a receiver should also reject
// timestamps far from its clock (five minutes is usual).
func Verify(secret []byte, timestamp string, body []byte, signature string) error {
	if len(secret) == 0 {
		return errors.New("verify webhook signature: empty secret")
	}
	h, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return fmt.Errorf("%w: want sha256=<hex>", ErrBadSignature)
	}
	got, err := hex.DecodeString(h)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: malformed hex digest", ErrBadSignature)
	}
	if !hmac.Equal(got, mac(secret, timestamp, body)) {
		return ErrBadSignature
	}
	return nil
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// PushKey returns the signing key of one recipient, derived from the
// signing secret: HMAC-SHA256(secret, "firewatch-push-key\x00" + recipient).
// Each receiver is given its own key (firewatch push-key), never the
// secret, so that no receiver can sign a push for another.
func PushKey(secret []byte, recipient string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("firewatch-push-key\x00"))
	h.Write([]byte(recipient))
	return h.Sum(nil)
}

// SignFor returns a version 2 signature of a push to recipient: "v2=" and
// the hex HMAC-SHA256, keyed with the recipient's key, of timestamp, ".",
// recipient, ".", body. The recipient is signed too, so that a push meant
// for one receiver is refused by another even where they share a key.
func SignFor(key []byte, recipient, timestamp string, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write([]byte(recipient))
	h.Write([]byte{'.'})
	h.Write(body)
	return "v2=" + hex.EncodeToString(h.Sum(nil))
}

// VerifyFor checks the version 2 signatures of a push to recipient: header
// is the value of HeaderSignatureV2, one or more "v2=<hex>" separated by
// commas (two while firewatch's secret is being rotated). It succeeds if
// any of them matches any of keys (a receiver accepts its old and its new
// key while it rotates). Like Verify, it does not judge the timestamp.
func VerifyFor(keys [][]byte, recipient, timestamp string, body []byte, header string) error {
	if len(keys) == 0 {
		return errors.New("verify webhook signature: no key")
	}
	n := 0
	for _, sig := range strings.Split(header, ",") {
		h, ok := strings.CutPrefix(strings.TrimSpace(sig), "v2=")
		if !ok {
			continue
		}
		got, err := hex.DecodeString(h)
		if err != nil || len(got) != sha256.Size {
			continue
		}
		n++
		for _, k := range keys {
			if len(k) == 0 {
				continue
			}
			want, _ := hex.DecodeString(SignFor(k, recipient, timestamp, body)[3:])
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: want v2=<hex>", ErrBadSignature)
	}
	return ErrBadSignature
}

// sign sets the signature headers of one push attempt to endpoint: the
// recipient, its v2 signatures (with the previous secret's too while one
// is configured) and, unless turned off, the v1 signature with the secret
// itself for receivers not yet given their own key.
func (m *Manager) sign(h http.Header, endpoint, ts string, body []byte) {
	r := m.recipient(endpoint)
	h.Set(HeaderRecipient, r)
	v2 := SignFor(PushKey(m.cfg.Secret, r), r, ts, body)
	if len(m.cfg.SecretPrevious) > 0 {
		v2 += ", " + SignFor(PushKey(m.cfg.SecretPrevious, r), r, ts, body)
	}
	h.Set(HeaderSignatureV2, v2)
	if !m.cfg.NoLegacySignature {
		h.Set(HeaderSignature, Sign(m.cfg.Secret, ts, body))
	}
}

// recipient names the receiver at endpoint: RecipientBrigade for the
// brigade's endpoint, else the first station in the ledger with that
// endpoint (stations sharing a receiver share its key).
func (m *Manager) recipient(endpoint string) string {
	if endpoint == m.cfg.BrigadeEndpoint {
		return RecipientBrigade
	}
	if m.cfg.SMS != nil && endpoint == m.cfg.SMS.URL { // sms.go
		return RecipientSMS
	}
	if m.cfg.Centre != nil && endpoint == m.cfg.Centre.URL { // delivery_centre.go
		return RecipientCentre
	}
	for _, st := range m.led().Stations {
		if st.Endpoint == endpoint {
			return st.ID
		}
	}
	return ""
}
