package gb45839

import (
	"errors"
	"net/http"
	"strings"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Handler receives the Appendix D calls of one peer platform on
// {prefix}/{token}/status_info and {prefix}/{token}/Install_info. The
// standard fixes no URL, method or authentication: POST with a JSON body is
// assumed, and the per-peer path token is firewatch's choice
// (docs/nbiot.md).
type Handler struct {
	nbiot.Intake
	Token string // required
}

// Validate reports a handler that cannot work or would accept anyone.
func (h *Handler) Validate() error {
	switch {
	case h.Submit == nil:
		return errors.New("gb45839: no Submit")
	case len(h.Token) < 12:
		return errors.New("gb45839: path token shorter than 12 characters")
	}
	return nil
}

// ServeHTTP answers {"success":1} with 200 once the call is submitted (or
// was already), {"success":0} with 5xx when Submit fails, with 4xx for a
// call that no retry can make acceptable.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const p = nbiot.PlatformGB45839
	path := strings.TrimSuffix(r.URL.Path, "/")
	i := strings.LastIndexByte(path, '/')
	if i < 0 || !nbiot.PathToken(path[:i], h.Token) {
		h.Counted(p, "token")
		http.NotFound(w, r)
		return
	}
	var decode func([]byte) (nbiot.Report, error)
	switch path[i+1:] {
	case "status_info":
		decode = DecodeStatus
	case "Install_info", "install_info":
		decode = DecodeInstall
	default:
		h.Counted(p, "path")
		http.NotFound(w, r)
		return
	}
	answer := func(status int, ok bool) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(Answer(ok))
	}
	if r.Method != http.MethodPost {
		h.Counted(p, "method")
		w.Header().Set("Allow", http.MethodPost)
		answer(http.StatusMethodNotAllowed, false)
		return
	}
	body, status, err := h.ReadBody(p, r)
	if err != nil {
		answer(status, false)
		return
	}
	rep, err := decode(body)
	if err != nil {
		answer(h.Reject(p, err), false)
		return
	}
	if err := h.Deliver(r.Context(), p, []nbiot.Report{rep}); err != nil {
		answer(http.StatusServiceUnavailable, false)
		return
	}
	answer(http.StatusOK, true)
}
