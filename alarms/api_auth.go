package alarms

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Role is what an API token may do. Each role includes the ones below it.
type Role int

// Roles, lowest first.
const (
	RoleNone Role = iota
	// RoleViewer reads alarms.
	RoleViewer
	// RoleOperator also moves alarms through their lifecycle (duty officers,
	// and the dispatch platform's receipts).
	RoleOperator
	// RoleAdmin may do everything.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole parses "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	for r := RoleViewer; r <= RoleAdmin; r++ {
		if r.String() == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("role %q: want viewer, operator or admin", s)
}

// Token is one bearer token of the HTTP API. Name identifies the person or
// system holding it: it is recorded as the actor of every transition made
// with the token. Secret is never logged.
type Token struct {
	Name   string
	Role   Role
	Secret string
}

// MinTokenLen is the shortest accepted token secret.
const MinTokenLen = 16

var tokenName = regexp.MustCompile(`^[\p{L}\p{N}._@-]{1,64}$`)

// ParseTokens parses the tokens setting: comma-separated entries of
// name:role:secret, e.g. "zhang-san:operator:8c1f…,grafana:viewer:51d0…".
// Errors never quote a secret.
func ParseTokens(s string) ([]Token, error) {
	var (
		out   []Token
		errs  []error
		names = map[string]bool{}
	)
	for i, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		parts := strings.SplitN(e, ":", 3)
		if len(parts) != 3 {
			errs = append(errs, fmt.Errorf("token %d: want name:role:secret", i+1))
			continue
		}
		name, roleName, secret := parts[0], parts[1], parts[2]
		if !tokenName.MatchString(name) {
			errs = append(errs, fmt.Errorf("token %d: name %q: use letters, digits, . _ @ - (at most 64)", i+1, name))
			continue
		}
		role, err := ParseRole(roleName)
		if err != nil {
			errs = append(errs, fmt.Errorf("token %d (%s): %w", i+1, name, err))
			continue
		}
		if len(secret) < MinTokenLen {
			errs = append(errs, fmt.Errorf("token %d (%s): secret shorter than %d characters", i+1, name, MinTokenLen))
			continue
		}
		if names[name] {
			errs = append(errs, fmt.Errorf("token %d: name %q given twice", i+1, name))
			continue
		}
		names[name] = true
		out = append(out, Token{Name: name, Role: role, Secret: secret})
	}
	return out, errors.Join(errs...)
}

// auth checks bearer tokens. Secrets are compared by their SHA-256 in
// constant time, against every token, so that neither the length nor the
// position of a match shows in the timing.
type auth struct {
	tokens []hashedToken
}

type hashedToken struct {
	name string
	role Role
	sum  [sha256.Size]byte
}

func newAuth(tokens []Token) *auth {
	a := &auth{}
	for _, t := range tokens {
		a.tokens = append(a.tokens, hashedToken{t.Name, t.Role, sha256.Sum256([]byte(t.Secret))})
	}
	return a
}

// identify returns the name and role of the request's bearer token. ok is
// false when a token was given but matches none. Without a token the role
// is RoleNone.
func (a *auth) identify(r *http.Request) (name string, role Role, ok bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", RoleNone, true
	}
	// The scheme is case-insensitive (RFC 9110).
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return "", RoleNone, false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(h[7:])))
	match := -1
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", RoleNone, false
	}
	return a.tokens[match].name, a.tokens[match].role, true
}

// Require wraps h so that it runs only for requests whose bearer token has
// at least role min, with the same rules as the alarm API: other parts of
// the HTTP API (the devices API) use it so that one set of tokens guards
// everything.
func (m *Manager) Require(min Role, h http.HandlerFunc) http.HandlerFunc {
	return m.auth.require(min, func(w http.ResponseWriter, r *http.Request, _ string) { h(w, r) })
}

// require wraps h so that it runs only for a request whose token has at
// least role min. Reads (min RoleViewer) are open to requests without a
// token when no tokens are configured at all; writes never are.
func (a *auth) require(min Role, h func(w http.ResponseWriter, r *http.Request, actor string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, role, ok := a.identify(r)
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="firewatch", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, errors.New("invalid bearer token"))
			return
		case role == RoleNone && min == RoleViewer && len(a.tokens) == 0:
			// Anonymous read, allowed while no tokens are configured.
		case role == RoleNone:
			w.Header().Set("WWW-Authenticate", `Bearer realm="firewatch"`)
			writeError(w, http.StatusUnauthorized, fmt.Errorf("a bearer token with role %s is required", min))
			return
		case role < min:
			writeError(w, http.StatusForbidden, fmt.Errorf("token %s has role %s; this needs %s", name, role, min))
			return
		}
		h(w, r, name)
	}
}
