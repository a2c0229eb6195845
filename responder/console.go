package responder

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
)

// mapView is the ledger as the console's offline map draws it.
type mapView struct {
	Devices  []mapDevice       `json:"devices"`
	Stations []mapStation      `json:"stations"`
	Places   map[string]string `json:"places"`
	// Grids outlines and counts the devices of each grid (grids.go).
	Grids []mapGrid `json:"grids"`
	// Tiles and Attribution: console.map_tiles (tiles.go); empty: the
	// plain projection.
	Tiles       string `json:"tiles,omitempty"`
	Attribution string `json:"attribution,omitempty"`
}

type mapDevice struct {
	ID   string  `json:"id"`
	Kind string  `json:"kind"`
	Grid string  `json:"grid"`
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
}

type mapStation struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Grids []string `json:"grids"`
	Lat   float64  `json:"lat"`
	Lon   float64  `json:"lon"`
}

func (s *Server) serveMap(w http.ResponseWriter, r *http.Request, _ string) {
	l := s.led()
	v := mapView{Devices: make([]mapDevice, 0, len(l.Devices)), Stations: []mapStation{}, Places: l.Places}
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.Removed || d.Lat == 0 && d.Lon == 0 {
			continue
		}
		v.Devices = append(v.Devices, mapDevice{ID: d.ID, Kind: d.Kind.String(), Grid: string(d.Grid), Lat: d.Lat, Lon: d.Lon})
	}
	for _, st := range l.Stations {
		v.Stations = append(v.Stations, mapStation{ID: st.ID, Name: st.Name, Grids: st.Grids, Lat: st.Lat, Lon: st.Lon})
	}
	v.Grids = grids(l)
	v.Tiles, v.Attribution = s.cfg.Console.MapTiles, s.cfg.Console.MapAttribution
	writeJSON(w, http.StatusOK, v)
}

// serveStatsCSV serves the 考核 table of a period as CSV (UTF-8 with a
// byte order mark, so that Excel reads the Chinese):
// GET /console/api/stats.csv?since=&until=&grid=.
func (s *Server) serveStatsCSV(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	var f alarms.Filter
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, p.name+": want an RFC 3339 time")
				return
			}
			*p.t = t
		}
	}
	if g := q.Get("grid"); g != "" {
		p, err := devices.ParsePrefix(g)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Grid = p
	}
	ss, err := s.cfg.Alarms.Stats(r.Context(), f)
	if err != nil {
		s.log.Error("console: statistics failed", "err", err)
		writeError(w, http.StatusInternalServerError, "统计失败")
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="kaohe.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "\ufeff")
	cw := csv.NewWriter(w)
	cw.Write([]string{"微型消防站", "站点编号", "所属街道/乡镇", "报警数", "误报数", "接警数", "接警中位(秒)", "接警P90(秒)",
		"1分钟响应率", "到场数", "到场中位(秒)", "到场P90(秒)", "3分钟到场率"})
	for _, st := range ss {
		name, town := "合计", ""
		if st.Station != "" {
			name = s.stationName(st.Station)
			if ls := s.led().Station(st.Station); ls != nil && len(ls.Grids) > 0 && len(ls.Grids[0]) >= 9 {
				town = s.led().Places[ls.Grids[0][:9]]
			}
		}
		cw.Write([]string{name, st.Station, town, strconv.Itoa(st.Alarms), strconv.Itoa(st.FalseAlarms),
			strconv.Itoa(st.Acknowledge.N), secs(st.Acknowledge.Median), secs(st.Acknowledge.P90), pct(st.RespondedInTime),
			strconv.Itoa(st.Arrive.N), secs(st.Arrive.Median), secs(st.Arrive.P90), pct(st.ArrivedInTime)})
	}
	cw.Flush()
}

func secs(p *float64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatFloat(*p, 'f', 1, 64)
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

// serveRedispatch re-dispatches an open alarm to another station:
// POST /console/api/alarms/{id}/redispatch {"station": "...", "note": "..."}.
func (s *Server) serveRedispatch(w http.ResponseWriter, r *http.Request, actor string) {
	var b struct {
		Station string `json:"station"`
		Note    string `json:"note"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxTapBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		writeError(w, http.StatusBadRequest, `body: want {"station": "...", "note": "..."}`)
		return
	}
	a, err := s.cfg.Alarms.Redispatch(r.Context(), r.PathValue("id"), b.Station, actor, b.Note)
	switch {
	case errors.Is(err, alarms.ErrNotFound):
		writeError(w, http.StatusNotFound, "报警不存在")
	case errors.Is(err, alarms.ErrNoStation):
		writeError(w, http.StatusBadRequest, "站点不存在或没有推送地址")
	case errors.Is(err, alarms.ErrIllegalTransition), errors.Is(err, alarms.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		s.log.Error("console: redispatch failed", "alarm", r.PathValue("id"), "err", err)
		writeError(w, http.StatusInternalServerError, "改派失败")
	default:
		s.met.redispatch.Inc()
		s.Notify(a)
		writeJSON(w, http.StatusOK, a)
	}
}

// serveMembers lists who acted through responder links in the last 7 days:
// GET /console/api/members.
func (s *Server) serveMembers(w http.ResponseWriter, r *http.Request, _ string) {
	ms, err := s.cfg.Alarms.Members(r.Context(), time.Now().Add(-7*24*time.Hour), 500)
	if err != nil {
		s.log.Error("console: members failed", "err", err)
		writeError(w, http.StatusInternalServerError, "读取处置人员失败")
		return
	}
	if ms == nil {
		ms = []alarms.Member{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": ms})
}
