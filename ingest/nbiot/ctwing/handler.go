package ctwing

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Handler receives the pushes of one CTWing subscription. Mount it on a
// path that ends in its Token (/nbiot/ctwing/{token}): CTWing signs nothing
// (no signature scheme for HTTP push was found), so an unguessable path
// token, HTTPS and the tenant and product allow-lists are what keep others
// from pushing alarms.
type Handler struct {
	nbiot.Intake
	// Token is the subscription's path token: the last path segment must
	// equal it. Required.
	Token string
	// Tenants and Products allow-list tenantId and productId. Both are
	// required: an empty list allows nothing.
	Tenants, Products []string
}

// Validate reports a handler that would refuse everything or accept anyone.
func (h *Handler) Validate() error {
	switch {
	case h.Submit == nil:
		return errors.New("ctwing: no Submit")
	case len(h.Token) < 16:
		return errors.New("ctwing: path token shorter than 16 characters")
	case len(h.Tenants) == 0 || len(h.Products) == 0:
		return errors.New("ctwing: tenant and product ids must be configured")
	}
	return nil
}

// ServeHTTP answers 200 once the push's report is submitted (or was
// already), 5xx when Submit fails so that CTWing retries, 4xx for a push
// that no retry can make acceptable.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const p = nbiot.PlatformCTWing
	if !nbiot.PathToken(r.URL.Path, h.Token) {
		h.Counted(p, "token")
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		h.Counted(p, "method")
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, status, err := h.ReadBody(p, r)
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	rep, err := Decode(body)
	if err != nil {
		http.Error(w, err.Error(), h.Reject(p, err))
		return
	}
	if !allowed(h.Tenants, rep.Tenant) {
		h.Counted(p, "tenant")
		http.Error(w, "tenant not configured", http.StatusForbidden)
		return
	}
	if !allowed(h.Products, rep.Product) {
		h.Counted(p, "product")
		http.Error(w, "product not configured", http.StatusForbidden)
		return
	}
	if err := h.Deliver(r.Context(), p, []nbiot.Report{rep}); err != nil {
		http.Error(w, "not taken, retry", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"code":0}`))
}

func allowed(list []string, v string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return subtle.ConstantTimeCompare([]byte(s), []byte(v)) == 1 })
}
