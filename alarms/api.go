package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/httpjson"
	"github.com/firewatch-iot/firewatch/rules"
)

// Handler serves the alarm API (docs/api.yaml):
//
//	GET  /api/v1/alarms?state=&severity=&grid=&device=&since=&until=&limit=   viewer
//	GET  /api/v1/alarms/{id}                                                  viewer
//	POST /api/v1/alarms/{id}/{action}                                         operator
//
// where action is receipt, acknowledge, dispatch, arrive, resolve,
// false-alarm or test. Mount it on "/api/v1/".
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/alarms", m.auth.require(RoleViewer, m.serveList))
	mux.HandleFunc("GET /api/v1/alarms/{id}", m.auth.require(RoleViewer, m.serveGet))
	mux.HandleFunc("POST /api/v1/alarms/{id}/{action}", m.auth.require(RoleOperator, m.serveAction))
	mux.HandleFunc("GET /api/v1/stations", m.auth.require(RoleViewer, m.serveStations))
	mux.HandleFunc("GET /api/v1/stats/response", m.auth.require(RoleViewer, m.serveStats))
	mux.HandleFunc("GET /api/v1/digest", m.auth.require(RoleViewer, m.serveDigest))
	mux.HandleFunc("PUT /api/v1/stations/{id}/status", m.auth.require(RoleOperator, m.serveStationStatus))
	return mux
}

// serveStats serves the response-time accounting per station:
// GET /api/v1/stats/response?grid=&since=&until=.
func (m *Manager) serveStats(w http.ResponseWriter, r *http.Request, _ string) {
	f, err := parseFilter(r.URL.Query(), "grid", "since", "until")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ss, err := m.Stats(r.Context(), f)
	m.reply(w, err, "computing statistics failed", nil, struct {
		Stations []StationStats `json:"stations"`
	}{ss})
}

func (m *Manager) serveStations(w http.ResponseWriter, r *http.Request, _ string) {
	ss, err := m.StationStatuses(r.Context())
	m.reply(w, err, "reading stations failed", nil, struct {
		Stations []StationStatus `json:"stations"`
	}{ss})
}

func (m *Manager) serveStationStatus(w http.ResponseWriter, r *http.Request, actor string) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s, err := m.SetStationStatus(r.Context(), r.PathValue("id"), b, actor)
	m.reply(w, err, "storing the status failed", []any{"station", r.PathValue("id")}, s)
}

// actions maps the last path element of a write to the state it moves the
// alarm to.
var actions = map[string]State{
	"receipt":     StateReceived,
	"acknowledge": StateAcknowledged,
	"dispatch":    StateDispatched,
	"arrive":      StateArrived,
	"resolve":     StateResolved,
	"false-alarm": StateFalseAlarm,
	"test":        StateTest,
}

// actionBody is the optional JSON body of a write.
type actionBody struct {
	Note string `json:"note"`
}

func (m *Manager) serveAction(w http.ResponseWriter, r *http.Request, actor string) {
	to, ok := actions[r.PathValue("action")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown action %q", r.PathValue("action")))
		return
	}
	var body actionBody
	if r.ContentLength != 0 {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("body: want {\"note\": \"...\"}: %v", err))
			return
		}
	}
	a, err := m.Transition(r.Context(), r.PathValue("id"), to, actor, body.Note)
	m.reply(w, err, "changing the alarm failed", []any{"alarm", r.PathValue("id"), "to", to}, a)
}

// serveDigest serves GET /api/v1/digest?grid=&since=&until=&schedule=.
func (m *Manager) serveDigest(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	if err := checkParams(q, "grid", "since", "until", "schedule"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	sched := q.Get("schedule")
	q.Del("schedule")
	f, err := parseFilter(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if f.Grid == "" {
		writeError(w, http.StatusBadRequest, errors.New("grid is required (a town or county code)"))
		return
	}
	if sched != "" {
		if sched == DigestOff || !ValidDigest(sched) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("schedule %q: want daily, weekly or monthly", sched))
			return
		}
		f.Since, f.Until, _, _ = digestPeriod(sched, time.Now(), 0)
	}
	if f.Since.IsZero() || f.Until.IsZero() || !f.Since.Before(f.Until) {
		writeError(w, http.StatusBadRequest, errors.New("give since < until, or schedule (the last complete day, week or month)"))
		return
	}
	d, err := m.Digest(r.Context(), f.Grid, f.Since, f.Until)
	m.reply(w, err, "computing the digest failed", nil, struct {
		Digest
		Title string `json:"title"`
		Text  string `json:"text"`
	}{d, d.Title(sched), d.Text()})
}

var listParams = []string{"state", "severity", "grid", "device", "since", "until", "limit"}

func (m *Manager) serveList(w http.ResponseWriter, r *http.Request, _ string) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	alarms, err := m.store.list(r.Context(), f)
	m.reply(w, err, "listing alarms failed", nil, struct {
		Alarms []Alarm `json:"alarms"`
	}{alarms})
}

func (m *Manager) serveGet(w http.ResponseWriter, r *http.Request, _ string) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	a, err := m.store.get(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		err = &clientError{http.StatusNotFound, fmt.Errorf("alarm %s not found", formatID(id))}
	}
	m.reply(w, err, "reading the alarm failed", []any{"alarm", formatID(id)}, a)
}

// parseFilter reads the list query, or of known (a subset of listParams)
// if given. Unknown parameters are an error too: a misspelt filter silently
// ignored would show a duty officer the wrong alarms.
func parseFilter(q url.Values, known ...string) (Filter, error) {
	var f Filter
	if len(known) == 0 {
		known = listParams
	}
	if err := checkParams(q, known...); err != nil {
		return f, err
	}
	for k, v := range q {
		if len(v) > 1 {
			return f, fmt.Errorf("query parameter %q given %d times", k, len(v))
		}
	}
	switch s := State(q.Get("state")); {
	case s == "", s == FilterOpen, s == FilterClosed, s.Valid():
		f.State = s
	default:
		return f, fmt.Errorf("state %q: want open, closed or one of %v", s, States)
	}
	if s := q.Get("severity"); s != "" {
		sev, err := rules.ParseSeverity(s)
		if err != nil {
			return f, err
		}
		f.Severity = sev
	}
	if s := q.Get("grid"); s != "" {
		p, err := devices.ParsePrefix(s)
		if err != nil {
			return f, err
		}
		f.Grid = p
	}
	if s := q.Get("device"); s != "" {
		if err := devices.CheckID(s); err != nil {
			return f, fmt.Errorf("device: %w", err)
		}
		f.Device = s
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return f, fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-11-23T18:00:00+08:00", p.name, s)
			}
			*p.t = t
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, errors.New("until must be after since")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return f, fmt.Errorf("limit %q: want a number from 1 to %d", s, MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// checkParams refuses query parameters other than known.
func checkParams(q url.Values, known ...string) error {
	for k := range q {
		if !slices.Contains(known, k) {
			return fmt.Errorf("unknown query parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
	return nil
}

// clientError is an error the client made (or asked for: an unknown
// alarm), answered with its status and its own text.
type clientError struct {
	status int
	err    error
}

func (e *clientError) Error() string { return e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// status is the HTTP status of a failed request: the client's errors
// (unknown, malformed, not allowed now) are 4xx and answered with their
// text; anything else is 500.
func status(err error) int {
	var ce *clientError
	switch {
	case errors.As(err, &ce):
		return ce.status
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrBadStatus):
		return http.StatusBadRequest
	case errors.Is(err, ErrIllegalTransition), errors.Is(err, ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// reply answers a request that ended with v and err: v as JSON when err is
// nil; the error's own text with its 4xx status when the client caused it;
// otherwise a 500 saying only what failed (failed), with the error and
// logArgs logged, so that the store's internals do not reach clients.
func (m *Manager) reply(w http.ResponseWriter, err error, failed string, logArgs []any, v any) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	st := status(err)
	if st != http.StatusInternalServerError {
		writeError(w, st, err)
		return
	}
	if errors.Is(err, context.Canceled) {
		// The client went away (a page navigated on): nothing failed.
		m.log.Debug("alarm API: "+failed, append(logArgs, "err", err)...)
	} else {
		m.log.Error("alarm API: "+failed, append(logArgs, "err", err)...)
	}
	writeError(w, st, errors.New(failed))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	httpjson.Write(w, status, v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{err.Error()})
}
