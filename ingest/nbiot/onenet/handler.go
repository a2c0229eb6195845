package onenet

import (
	"errors"
	"net/http"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Handler receives one OneNET push instance (or legacy push
// configuration): GET is the URL verification, POST the signed messages.
type Handler struct {
	nbiot.Intake
	Config Config
}

// Validate reports a handler that cannot work.
func (h *Handler) Validate() error {
	if h.Submit == nil {
		return errors.New("onenet: no Submit")
	}
	return h.Config.Validate()
}

// ServeHTTP answers a verification GET with msg alone, and a POST with 200
// once its reports are submitted (or were already), 5xx when Submit fails
// so that OneNET retries, 403 for a signature that does not verify.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const p = nbiot.PlatformOneNET
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		msg, err := VerifyURL(h.Config.Token, q.Get("msg"), q.Get("nonce"), q.Get("signature"))
		if err != nil {
			http.Error(w, "verification failed", h.Reject(p, err))
			return
		}
		h.Counted(p, "verified")
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(msg)) // the msg value only: no newline, no JSON
	case http.MethodPost:
		body, status, err := h.ReadBody(p, r)
		if err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		reps, err := Decode(h.Config, body)
		if err != nil {
			http.Error(w, err.Error(), h.Reject(p, err))
			return
		}
		if err := h.Deliver(r.Context(), p, reps); err != nil {
			http.Error(w, "not taken, retry", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	default:
		h.Counted(p, "method")
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
	}
}
