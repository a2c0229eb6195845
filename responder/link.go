package responder

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// DefaultTTL is how long a responder link works after it was made (at the
// delivery of the push that carries it).
const DefaultTTL = 24 * time.Hour

// Reasons a link is refused, the label of firewatch_responder_links_refused_total.
var (
	ErrMalformed   = errors.New("malformed link token")
	ErrBadMAC      = errors.New("link token signature does not match")
	ErrExpired     = errors.New("link expired")
	ErrOtherAlarm  = errors.New("link is for another alarm")
	errNoToken     = errors.New("no link token")
	tokenVersion   = "r1"
	tokenMaxLength = 512
)

// Key derives the link signing key from the alarms signing secret:
// HMAC-SHA256(secret, "firewatch-responder-link"). A key of its own, so
// that a link token never helps anyone forge a push signature.
func Key(secret []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("firewatch-responder-link"))
	return h.Sum(nil)
}

// Claims is what a link token grants: acting on Alarm as a member of
// Station (a station id, or "brigade") until Expires.
type Claims struct {
	Alarm   string
	Station string
	Expires time.Time
}

// Signer makes and checks link tokens and links.
type Signer struct {
	// Keys check tokens; the first one signs. Two while alarms.secret is
	// rotated (alarms.secret_previous), so links sent before still work.
	Keys [][]byte
	// BaseURL is where phones reach firewatch, e.g. https://fw.example.cn.
	BaseURL string
	TTL     time.Duration
	now     func() time.Time
}

// NewSigner returns a Signer with keys derived from the given secrets
// (empty ones skipped).
func NewSigner(baseURL string, ttl time.Duration, secrets ...[]byte) *Signer {
	s := &Signer{BaseURL: strings.TrimRight(baseURL, "/"), TTL: ttl, now: time.Now}
	if s.TTL <= 0 {
		s.TTL = DefaultTTL
	}
	for _, sec := range secrets {
		if len(sec) > 0 {
			s.Keys = append(s.Keys, Key(sec))
		}
	}
	return s
}

// Token returns the token of c: "r1." base64url(alarm "|" station "|"
// expiry) "." base64url(HMAC-SHA256).
func (s *Signer) Token(c Claims) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(c.Alarm + "|" + c.Station + "|" + strconv.FormatInt(c.Expires.Unix(), 10)))
	return tokenVersion + "." + payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(s.Keys[0], payload))
}

func (s *Signer) mac(key []byte, payload string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(tokenVersion + "." + payload))
	return h.Sum(nil)
}

// Link returns the responder page link of alarm for station, valid for
// TTL from now; "" without a key or base URL. It has the signature of
// alarms.Config.ResponderLink.
//
// The link expires TTL after issued, the time its push was queued: every
// delivery attempt of one push then carries the same link, so that a
// retried push is byte for byte the push first sent (docs/dispatch.md).
func (s *Signer) Link(alarm, station string, issued time.Time) string {
	if len(s.Keys) == 0 || s.BaseURL == "" || alarm == "" || station == "" {
		return "" // no station (a grid nobody covers): nobody to act for
	}
	t := s.Token(Claims{Alarm: alarm, Station: station, Expires: issued.Add(s.TTL)})
	return s.BaseURL + "/r/" + alarm + "#t=" + t
}

// Check verifies token for alarm and returns its claims. The signature is
// checked before anything else is believed.
func (s *Signer) Check(token, alarm string) (Claims, error) {
	var c Claims
	if token == "" {
		return c, errNoToken
	}
	if len(token) > tokenMaxLength {
		return c, ErrMalformed
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != tokenVersion {
		return c, ErrMalformed
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != sha256.Size {
		return c, ErrMalformed
	}
	ok := false
	for _, k := range s.Keys {
		if hmac.Equal(sig, s.mac(k, parts[1])) {
			ok = true
		}
	}
	if !ok {
		return c, ErrBadMAC
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, ErrMalformed
	}
	f := strings.Split(string(raw), "|")
	if len(f) != 3 {
		return c, ErrMalformed
	}
	exp, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return c, ErrMalformed
	}
	c = Claims{Alarm: f[0], Station: f[1], Expires: time.Unix(exp, 0)}
	if c.Alarm != alarm {
		return c, ErrOtherAlarm
	}
	if !s.now().Before(c.Expires) {
		return c, ErrExpired
	}
	return c, nil
}

// reason names a Check error for the refusal counter.
func reason(err error) string {
	switch {
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrBadMAC):
		return "bad_signature"
	case errors.Is(err, ErrOtherAlarm):
		return "other_alarm"
	case errors.Is(err, errNoToken):
		return "missing"
	}
	return "malformed"
}
