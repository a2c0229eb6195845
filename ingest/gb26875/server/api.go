package server

import (
	"errors"
	"net/http"

	"github.com/firewatch-iot/firewatch/internal/httpjson"
)

// The HTTP API of the centre's duties (docs/api.md). The caller mounts the handlers behind its
// authentication (cmd/firewatch: 查岗 for operators, the figures for viewers).

// ServeInspect is POST /api/v1/uitds/{uitd}/inspect: a 查岗 of the UITD (12 hex digits or device id) on
// behalf of actor. 202 with the inspection once the UITD confirmed it (its answer is awaited; read it with
// ServeAssessment), 404 unknown UITD, 409 a 查岗 still pending (with it), 503 not connected, 504 not
// confirmed by the UITD after 3 retries (both recorded as failed 查岗).
func (s *Server) ServeInspect(w http.ResponseWriter, r *http.Request, actor string) {
	a, ok := s.Resolve(r.PathValue("uitd"))
	if !ok {
		writeError(w, http.StatusNotFound, ErrUnknownUITD, nil)
		return
	}
	p, err := s.Inspect(r.Context(), a, "api", actor)
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, p)
	case errors.Is(err, ErrPending):
		writeError(w, http.StatusConflict, err, &p)
	case errors.Is(err, ErrNotConnected):
		writeError(w, http.StatusServiceUnavailable, err, &p)
	case errors.Is(err, ErrNoAnswer), errors.Is(err, ErrDenied):
		writeError(w, http.StatusGatewayTimeout, err, &p)
	default:
		writeError(w, http.StatusServiceUnavailable, err, nil)
	}
}

// ServeAssessment is GET /api/v1/uitds/{uitd}/inspections: the UITD's 考核 figure and its last 查岗.
func (s *Server) ServeAssessment(w http.ResponseWriter, r *http.Request) {
	a, ok := s.Resolve(r.PathValue("uitd"))
	if !ok {
		writeError(w, http.StatusNotFound, ErrUnknownUITD, nil)
		return
	}
	as, _ := s.Assessment(a)
	writeJSON(w, http.StatusOK, as)
}

// ServeAssessments is GET /api/v1/uitds/inspections: every UITD's figure, in ledger order.
func (s *Server) ServeAssessments(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		UITDs []Assessment `json:"uitds"`
	}{s.Assessments()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	httpjson.Write(w, status, v)
}

// writeError writes {"error": …} (the alarm API's shape), with the inspection concerned when there is one.
func writeError(w http.ResponseWriter, status int, err error, p *Inspection) {
	writeJSON(w, status, struct {
		Error      string      `json:"error"`
		Inspection *Inspection `json:"inspection,omitempty"`
	}{err.Error(), p})
}
