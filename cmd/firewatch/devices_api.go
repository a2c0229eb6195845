package main

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// deviceStatus is one device in the devices API: where it is, whether it
// is online (liveness), and its battery and signal trend.
type deviceStatus struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Grid    string `json:"grid"`
	Station string `json:"station,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// Model, Address, Lat and Lon come from the ledger (台账), for maps.
	Model   string   `json:"model,omitempty"`
	Address string   `json:"address,omitempty"`
	Lat     *float64 `json:"lat,omitempty"`
	Lon     *float64 `json:"lon,omitempty"`
	Online  bool     `json:"online"`
	// LastSeen is when firewatch last heard from the device (its receive
	// time), absent if not since firewatch started.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	GraceS   float64    `json:"grace_s"`
	// BatteryPct and RSSIdBm are the last reported values; the *_avg ones
	// average about the last eight reports, so last < avg means falling.
	BatteryPct    *float64 `json:"battery_pct,omitempty"`
	BatteryPctAvg *float64 `json:"battery_pct_avg,omitempty"`
	RSSIdBm       *float64 `json:"rssi_dbm,omitempty"`
	RSSIdBmAvg    *float64 `json:"rssi_dbm_avg,omitempty"`
}

var cstZone = time.FixedZone("CST", 8*60*60)

func orNil(f float64) *float64 {
	if math.IsNaN(f) {
		return nil
	}
	return &f
}

func newDeviceStatus(d *devices.Device, st devices.Status) deviceStatus {
	ds := deviceStatus{ID: d.ID, Kind: d.Kind.String(), Grid: string(d.Grid), Gateway: d.Gateway, Online: st.Online,
		GraceS:     st.Grace.Seconds(),
		BatteryPct: orNil(st.Battery), BatteryPctAvg: orNil(st.BatteryAvg), RSSIdBm: orNil(st.RSSI), RSSIdBmAvg: orNil(st.RSSIAvg)}
	if d.Station != nil {
		ds.Station = d.Station.ID
	}
	ds.Model, ds.Address = d.Model, d.Address
	if d.Lat != 0 || d.Lon != 0 { // 0,0 is the ledger's "not given"
		lat, lon := d.Lat, d.Lon
		ds.Lat, ds.Lon = &lat, &lon
	}
	if st.LastSeen > 0 {
		t := time.UnixMilli(st.LastSeen).In(cstZone)
		ds.LastSeen = &t
	}
	return ds
}

// devicesAPI serves
//
//	GET /api/v1/devices/{id}                          one device
//	GET /api/v1/devices?offline=true&grid=450204&limit=100   devices, in ledger order
type devicesAPI struct {
	ledger *devices.Ledger
	live   *devices.Liveness
	// registry, if set, is the live registry: its snapshot in force
	// replaces ledger (issue 18).
	registry *devices.Live
}

// led is the registry snapshot in force.
func (a *devicesAPI) led() *devices.Ledger {
	if a.registry != nil {
		return a.registry.Load()
	}
	return a.ledger
}

// register mounts the devices API; guard applies the API's bearer tokens
// (viewer role and up).
func (a *devicesAPI) register(mux *http.ServeMux, guard func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /api/v1/devices/{id}", guard(a.one))
	mux.HandleFunc("GET /api/v1/devices", guard(a.list))
}

func (a *devicesAPI) one(w http.ResponseWriter, r *http.Request) {
	d, ok := a.led().LookupID(r.PathValue("id"))
	if !ok {
		writeDevicesJSON(w, http.StatusNotFound, map[string]string{"error": "unknown device"})
		return
	}
	writeDevicesJSON(w, http.StatusOK, newDeviceStatus(d, a.live.Status(d.Index)))
}

func (a *devicesAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeDevicesJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1…1000"})
			return
		}
		limit = n
	}
	var offlineOnly bool
	switch q.Get("offline") {
	case "", "false":
	case "true":
		offlineOnly = true
	default:
		writeDevicesJSON(w, http.StatusBadRequest, map[string]string{"error": "offline must be true or false"})
		return
	}
	grid := q.Get("grid")
	if grid != "" {
		if _, err := devices.ParsePrefix(grid); err != nil {
			writeDevicesJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
	}
	out := []deviceStatus{}
	l := a.led()
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.Removed || grid != "" && !d.Grid.Within(grid) {
			continue
		}
		st := a.live.Status(d.Index)
		if offlineOnly && st.Online {
			continue
		}
		out = append(out, newDeviceStatus(d, st))
		if len(out) == limit {
			break
		}
	}
	writeDevicesJSON(w, http.StatusOK, map[string]any{"devices": out, "offline_total": a.live.Offline()})
}

func writeDevicesJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
