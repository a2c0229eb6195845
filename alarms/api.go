package alarms

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Handler serves the alarm API:
//
//	GET /api/v1/alarms?state=&severity=&grid=&device=&since=&until=&limit=
//	GET /api/v1/alarms/{id}
//
// Mount it on both "/api/v1/alarms" and "/api/v1/alarms/" (or on "/").
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/alarms", m.serveList)
	mux.HandleFunc("GET /api/v1/alarms/{id}", m.serveGet)
	return mux
}

var listParams = []string{"state", "severity", "grid", "device", "since", "until", "limit"}

func (m *Manager) serveList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	alarms, err := m.store.list(r.Context(), f)
	if err != nil {
		m.log.Error("alarm API: list failed", "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("listing alarms failed"))
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Alarms []Alarm `json:"alarms"`
	}{alarms})
}

func (m *Manager) serveGet(w http.ResponseWriter, r *http.Request) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	a, err := m.store.get(r.Context(), id)
	switch {
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, fmt.Errorf("alarm %s not found", formatID(id)))
	case err != nil:
		m.log.Error("alarm API: get failed", "alarm", formatID(id), "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("reading the alarm failed"))
	default:
		writeJSON(w, http.StatusOK, a)
	}
}

// parseFilter reads the list query. Unknown parameters are an error too: a
// misspelt filter silently ignored would show a duty officer the wrong
// alarms.
func parseFilter(q url.Values) (Filter, error) {
	var f Filter
	for k, v := range q {
		if !slices.Contains(listParams, k) {
			return f, fmt.Errorf("unknown query parameter %q (known: %s)", k, strings.Join(listParams, ", "))
		}
		if len(v) > 1 {
			return f, fmt.Errorf("query parameter %q given %d times", k, len(v))
		}
	}
	switch s := State(q.Get("state")); s {
	case "", StateRaised, StateCleared:
		f.State = s
	default:
		return f, fmt.Errorf("state %q: want raised or cleared", s)
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{err.Error()})
}
