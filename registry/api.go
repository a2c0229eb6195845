package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/httpjson"
)

// API is the registry's admin HTTP API under /api/v1/registry/
// (docs/registry.md, docs/api.md): list, read, create, replace and delete
// devices, gateways, stations and places, and read the audit history.
type API struct {
	Store *Store
	// Read wraps the handlers that read (role viewer); Write those that
	// change the registry (role admin), handing them the token's name, the
	// actor kept in the audit. cmd/firewatch passes the alarm API's token
	// check (alarms.Manager.Require).
	Read  func(http.HandlerFunc) http.HandlerFunc
	Write func(func(w http.ResponseWriter, r *http.Request, actor string)) http.HandlerFunc
}

// Page sizes of the list endpoints.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	maxBody      = 1 << 20
)

// Register mounts the API on mux.
func (a *API) Register(mux *http.ServeMux) {
	const p = "/api/v1/registry/"
	mux.HandleFunc("GET "+p+"devices", a.Read(a.listDevices))
	mux.HandleFunc("POST "+p+"devices", a.Write(a.createDevice))
	mux.HandleFunc("GET "+p+"devices/{id}", a.Read(a.getDevice))
	mux.HandleFunc("PUT "+p+"devices/{id}", a.Write(a.putDevice))
	mux.HandleFunc("DELETE "+p+"devices/{id}", a.Write(a.deleter("device", func(c *devices.Change, id string) { c.DeleteDevices = []string{id} })))
	mux.HandleFunc("GET "+p+"gateways", a.Read(a.listGateways))
	mux.HandleFunc("POST "+p+"gateways", a.Write(a.createGateway))
	mux.HandleFunc("GET "+p+"gateways/{id}", a.Read(a.getGateway))
	mux.HandleFunc("PUT "+p+"gateways/{id}", a.Write(a.putGateway))
	mux.HandleFunc("DELETE "+p+"gateways/{id}", a.Write(a.deleter("gateway", func(c *devices.Change, id string) { c.DeleteGateways = []string{id} })))
	mux.HandleFunc("GET "+p+"stations", a.Read(a.listStations))
	mux.HandleFunc("POST "+p+"stations", a.Write(a.createStation))
	mux.HandleFunc("GET "+p+"stations/{id}", a.Read(a.getStation))
	mux.HandleFunc("PUT "+p+"stations/{id}", a.Write(a.putStation))
	mux.HandleFunc("DELETE "+p+"stations/{id}", a.Write(a.deleter("station", func(c *devices.Change, id string) { c.DeleteStations = []string{id} })))
	mux.HandleFunc("GET "+p+"places", a.Read(a.listPlaces))
	mux.HandleFunc("GET "+p+"places/{id}", a.Read(a.getPlace))
	mux.HandleFunc("PUT "+p+"places/{id}", a.Write(a.putPlace))
	mux.HandleFunc("DELETE "+p+"places/{id}", a.Write(a.deleter("place", func(c *devices.Change, id string) { c.Places = map[string]string{id: ""} })))
	mux.HandleFunc("GET "+p+"audit", a.Read(a.audit))
}

// ProblemJSON is one field-level problem of a 422 answer.
type ProblemJSON struct {
	Section string `json:"section"`
	ID      string `json:"id"`
	Field   string `json:"field"`
	Reason  string `json:"reason"`
}

type errorJSON struct {
	Error    string        `json:"error"`
	Problems []ProblemJSON `json:"problems,omitempty"`
}

// fail answers err with its status: 422 with every problem for a
// validation failure, 412 for a failed If-Match, 409 for a create of an
// existing entity.
func fail(w http.ResponseWriter, err error) {
	var le *devices.LoadError
	var ce *ConflictError
	switch {
	case errors.As(err, &le):
		out := errorJSON{Error: "the change is not valid: see problems", Problems: []ProblemJSON{}}
		for _, p := range le.Problems {
			out.Problems = append(out.Problems, ProblemJSON{Section: p.Section, ID: p.ID, Field: p.Field, Reason: p.Reason})
		}
		httpjson.Write(w, http.StatusUnprocessableEntity, out)
	case errors.As(err, &ce) && ce.Want == "(none)":
		httpjson.Write(w, http.StatusConflict, errorJSON{Error: ce.Error()})
	case errors.As(err, &ce):
		httpjson.Write(w, http.StatusPreconditionFailed, errorJSON{Error: ce.Error()})
	default:
		httpjson.Write(w, http.StatusInternalServerError, errorJSON{Error: err.Error()})
	}
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	httpjson.Write(w, http.StatusBadRequest, errorJSON{Error: fmt.Sprintf(format, args...)})
}

func notFound(w http.ResponseWriter, what, id string) {
	httpjson.Write(w, http.StatusNotFound, errorJSON{Error: fmt.Sprintf("%s %q is not in the registry", what, id)})
}

// page reads limit and after.
func page(w http.ResponseWriter, r *http.Request) (after string, limit int, ok bool) {
	limit = DefaultLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			badRequest(w, "limit %q: want 1…%d", s, MaxLimit)
			return "", 0, false
		}
		limit = n
	}
	return r.URL.Query().Get("after"), limit, true
}

// listJSON is a page of a list: next is the after of the next page, ""
// on the last one.
type listJSON[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

func writeList[T any](w http.ResponseWriter, items []T, limit int, key func(T) string) {
	out := listJSON[T]{Items: items}
	if len(items) == limit {
		out.Next = key(items[len(items)-1])
	}
	httpjson.Write(w, http.StatusOK, out)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		badRequest(w, "body: %v", err)
		return false
	}
	return true
}

// opts builds the commit options of a request: its If-Match header for
// key, the source "api".
func opts(r *http.Request, key string) CommitOptions {
	o := CommitOptions{Source: "api", DryRun: r.URL.Query().Get("dry_run") == "true"}
	if m := r.Header.Get("If-Match"); m != "" {
		o.IfMatch = map[string]string{key: m}
	}
	return o
}

// pathID checks the id in the path and a body's id (which may be left out).
func pathID(w http.ResponseWriter, r *http.Request, body *string) (string, bool) {
	id := r.PathValue("id")
	if *body != "" && *body != id {
		badRequest(w, "the body's id %q is not the path's %q", *body, id)
		return "", false
	}
	*body = id
	return id, true
}

func invalid(section, id, field, reason string) error {
	return &devices.LoadError{Problems: []devices.Problem{problem(section, id, field, reason)}}
}

// secret makes a secret when asked, or checks a given hash.
func secret(section, id string, generate bool, hash *string, out *string) error {
	if generate {
		if *hash != "" {
			return invalid(section, id, "secret_hash", "give secret_hash or generate_secret, not both")
		}
		s := broker.GenerateSecret()
		h, err := broker.HashSecret([]byte(s))
		if err != nil {
			return err
		}
		*hash, *out = h, s
		return nil
	}
	if *hash != "" {
		if err := broker.CheckSecretHash(*hash); err != nil {
			return invalid(section, id, "secret_hash", err.Error())
		}
	}
	return nil
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request) {
	after, limit, ok := page(w, r)
	if !ok {
		return
	}
	ds, err := a.Store.Devices(r.Context(), after, limit)
	if err != nil {
		fail(w, err)
		return
	}
	writeList(w, ds, limit, func(d Device) string { return d.ID })
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request) {
	d, ok, err := a.Store.Device(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		fail(w, err)
	case !ok:
		notFound(w, "device", r.PathValue("id"))
	default:
		w.Header().Set("ETag", d.ETag)
		httpjson.Write(w, http.StatusOK, d)
	}
}

func (a *API) createDevice(w http.ResponseWriter, r *http.Request, actor string) {
	var d Device
	if !decode(w, r, &d) {
		return
	}
	a.saveDevice(w, r, actor, &d, true)
}

func (a *API) putDevice(w http.ResponseWriter, r *http.Request, actor string) {
	var d Device
	if !decode(w, r, &d) {
		return
	}
	if _, ok := pathID(w, r, &d.ID); !ok {
		return
	}
	a.saveDevice(w, r, actor, &d, false)
}

func (a *API) saveDevice(w http.ResponseWriter, r *http.Request, actor string, d *Device, create bool) {
	e, probs := d.entry()
	if len(probs) > 0 {
		fail(w, &devices.LoadError{Problems: probs})
		return
	}
	var plain string
	if err := secret("devices", d.ID, d.GenerateSecret, &e.SecretHash, &plain); err != nil {
		fail(w, err)
		return
	}
	key := "device/" + d.ID
	o := opts(r, key)
	if create {
		o.Absent = []string{key}
	} else if e.SecretHash == "" && !d.GenerateSecret {
		// A PUT without secret fields keeps the device's secret: a
		// client never sees the hash it would have to send back.
		if old, _, ok, err := a.Store.DeviceEntry(r.Context(), d.ID); err != nil {
			fail(w, err)
			return
		} else if ok {
			e.SecretHash = old.SecretHash
		}
	}
	if _, _, err := a.Store.Commit(r.Context(), actor, &devices.Change{UpsertDevices: []devices.DeviceEntry{e}}, o); err != nil {
		fail(w, err)
		return
	}
	out := deviceJSON(&e, 0)
	if !o.DryRun {
		got, _, err := a.Store.Device(r.Context(), d.ID)
		if err != nil {
			fail(w, err)
			return
		}
		out = got
		w.Header().Set("ETag", out.ETag)
	}
	out.Secret = plain
	httpjson.Write(w, status(create, o.DryRun), out)
}

func status(create, dry bool) int {
	if create && !dry {
		return http.StatusCreated
	}
	return http.StatusOK
}

func (a *API) listGateways(w http.ResponseWriter, r *http.Request) {
	after, limit, ok := page(w, r)
	if !ok {
		return
	}
	gs, err := a.Store.Gateways(r.Context(), after, limit)
	if err != nil {
		fail(w, err)
		return
	}
	writeList(w, gs, limit, func(g Gateway) string { return g.ID })
}

func (a *API) getGateway(w http.ResponseWriter, r *http.Request) {
	g, etag, ok, err := a.Store.GatewayEntry(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		fail(w, err)
	case !ok:
		notFound(w, "gateway", r.PathValue("id"))
	default:
		w.Header().Set("ETag", etag)
		out := gatewayJSON(&g, 0)
		out.ETag = etag
		httpjson.Write(w, http.StatusOK, out)
	}
}

func (a *API) createGateway(w http.ResponseWriter, r *http.Request, actor string) {
	var g Gateway
	if !decode(w, r, &g) {
		return
	}
	a.saveGateway(w, r, actor, &g, true)
}

func (a *API) putGateway(w http.ResponseWriter, r *http.Request, actor string) {
	var g Gateway
	if !decode(w, r, &g) {
		return
	}
	if _, ok := pathID(w, r, &g.ID); !ok {
		return
	}
	a.saveGateway(w, r, actor, &g, false)
}

func (a *API) saveGateway(w http.ResponseWriter, r *http.Request, actor string, g *Gateway, create bool) {
	e := devices.GatewayEntry{ID: g.ID, SecretHash: g.SecretHash}
	var plain string
	if err := secret("gateways", g.ID, g.GenerateSecret, &e.SecretHash, &plain); err != nil {
		fail(w, err)
		return
	}
	key := "gateway/" + g.ID
	o := opts(r, key)
	if create {
		o.Absent = []string{key}
	} else if e.SecretHash == "" {
		if old, _, ok, err := a.Store.GatewayEntry(r.Context(), g.ID); err != nil {
			fail(w, err)
			return
		} else if ok {
			e.SecretHash = old.SecretHash
		}
	}
	if _, _, err := a.Store.Commit(r.Context(), actor, &devices.Change{UpsertGateways: []devices.GatewayEntry{e}}, o); err != nil {
		fail(w, err)
		return
	}
	_, etag, _, err := a.Store.GatewayEntry(r.Context(), g.ID)
	if err != nil {
		fail(w, err)
		return
	}
	out := gatewayJSON(&e, 0)
	if !o.DryRun {
		out.ETag = etag
		w.Header().Set("ETag", etag)
	}
	out.Secret = plain
	httpjson.Write(w, status(create, o.DryRun), out)
}

func (a *API) listStations(w http.ResponseWriter, r *http.Request) {
	after, limit, ok := page(w, r)
	if !ok {
		return
	}
	ss, err := a.Store.Stations(r.Context(), after, limit)
	if err != nil {
		fail(w, err)
		return
	}
	writeList(w, ss, limit, func(s Station) string { return s.ID })
}

func (a *API) getStation(w http.ResponseWriter, r *http.Request) {
	st, etag, ok, err := a.Store.StationEntry(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		fail(w, err)
	case !ok:
		notFound(w, "station", r.PathValue("id"))
	default:
		w.Header().Set("ETag", etag)
		out := stationJSON(&st, 0)
		out.ETag = etag
		httpjson.Write(w, http.StatusOK, out)
	}
}

func (a *API) createStation(w http.ResponseWriter, r *http.Request, actor string) {
	var st Station
	if !decode(w, r, &st) {
		return
	}
	a.saveStation(w, r, actor, &st, true)
}

func (a *API) putStation(w http.ResponseWriter, r *http.Request, actor string) {
	var st Station
	if !decode(w, r, &st) {
		return
	}
	if _, ok := pathID(w, r, &st.ID); !ok {
		return
	}
	a.saveStation(w, r, actor, &st, false)
}

func (a *API) saveStation(w http.ResponseWriter, r *http.Request, actor string, st *Station, create bool) {
	e := devices.StationEntry{ID: st.ID, Name: st.Name, Grids: st.Grids, Endpoint: st.Endpoint, Lat: st.Lat, Lon: st.Lon}
	key := "station/" + st.ID
	o := opts(r, key)
	if create {
		o.Absent = []string{key}
	}
	if _, _, err := a.Store.Commit(r.Context(), actor, &devices.Change{UpsertStations: []devices.StationEntry{e}}, o); err != nil {
		fail(w, err)
		return
	}
	out := stationJSON(&e, 0)
	if !o.DryRun {
		_, etag, _, err := a.Store.StationEntry(r.Context(), st.ID)
		if err != nil {
			fail(w, err)
			return
		}
		out.ETag = etag
		w.Header().Set("ETag", etag)
	}
	httpjson.Write(w, status(create, o.DryRun), out)
}

func (a *API) listPlaces(w http.ResponseWriter, r *http.Request) {
	after, limit, ok := page(w, r)
	if !ok {
		return
	}
	ps, err := a.Store.Places(r.Context(), after, limit)
	if err != nil {
		fail(w, err)
		return
	}
	writeList(w, ps, limit, func(p Place) string { return p.Code })
}

func (a *API) getPlace(w http.ResponseWriter, r *http.Request) {
	p, ok, err := a.Store.Place(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		fail(w, err)
	case !ok:
		notFound(w, "place", r.PathValue("id"))
	default:
		w.Header().Set("ETag", p.ETag)
		httpjson.Write(w, http.StatusOK, p)
	}
}

func (a *API) putPlace(w http.ResponseWriter, r *http.Request, actor string) {
	var p Place
	if !decode(w, r, &p) {
		return
	}
	code, ok := pathID(w, r, &p.Code)
	if !ok {
		return
	}
	if p.Name == "" {
		fail(w, invalid("places", code, "name", "name is missing (DELETE removes a place)"))
		return
	}
	o := opts(r, "place/"+code)
	if _, _, err := a.Store.Commit(r.Context(), actor, &devices.Change{Places: map[string]string{code: p.Name}}, o); err != nil {
		fail(w, err)
		return
	}
	out := Place{Code: code, Name: p.Name}
	if !o.DryRun {
		got, _, err := a.Store.Place(r.Context(), code)
		if err != nil {
			fail(w, err)
			return
		}
		out = got
		w.Header().Set("ETag", out.ETag)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// deleter answers DELETE of an entity: 404 when it is not there, 204 once
// it is gone.
func (a *API) deleter(entity string, set func(c *devices.Change, id string)) func(w http.ResponseWriter, r *http.Request, actor string) {
	return func(w http.ResponseWriter, r *http.Request, actor string) {
		id := r.PathValue("id")
		key := entity + "/" + id
		o := opts(r, key)
		if o.IfMatch == nil {
			o.IfMatch = map[string]string{key: "*"} // it must exist
		}
		c := &devices.Change{}
		set(c, id)
		_, _, err := a.Store.Commit(r.Context(), actor, c, o)
		var ce *ConflictError
		if errors.As(err, &ce) && ce.Have == "" {
			notFound(w, entity, id)
			return
		}
		if err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *API) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			badRequest(w, "limit %q: want 1…%d", s, MaxLimit)
			return
		}
		limit = n
	}
	var before int64
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			badRequest(w, "before %q: want an audit record id", s)
			return
		}
		before = n
	}
	recs, err := a.Store.Audit(r.Context(), q.Get("entity"), q.Get("id"), before, limit)
	if err != nil {
		fail(w, err)
		return
	}
	out := struct {
		Items []AuditRecord `json:"items"`
		Next  string        `json:"next"`
	}{Items: recs}
	if len(recs) == limit {
		out.Next = strconv.FormatInt(recs[len(recs)-1].ID, 10)
	}
	httpjson.Write(w, http.StatusOK, out)
}
