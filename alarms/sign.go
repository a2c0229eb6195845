package alarms

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Push request headers.
const (
	HeaderTimestamp      = "X-Firewatch-Timestamp"
	HeaderSignature      = "X-Firewatch-Signature"
	HeaderIdempotencyKey = "Idempotency-Key"
)

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
