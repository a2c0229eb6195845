package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/live"
)

// Query types (the queryType of a target).
const (
	QueryAlarms         = "alarms"
	QueryDevices        = "devices"
	QueryGrid           = "grid"
	QueryOpenBySeverity = "open_by_severity"
	QueryStats          = "stats"
	QueryTransitions    = "transitions"
)

// Query is the JSON model of a target (src/types.ts).
type Query struct {
	QueryType string `json:"queryType"`
	// State: open, closed, one lifecycle state, or all/empty.
	State string `json:"state"`
	// Severity: fire, alarm, warning, fault, offline, or all/empty.
	Severity string `json:"severity"`
	// Grid is an administrative-code prefix (6, 9 or 12 digits), empty for all.
	Grid string `json:"grid"`
	// Device selects one device (devices, alarms).
	Device string `json:"device"`
	// Offline selects offline devices only.
	Offline bool `json:"offline"`
	// Level of the grid summary: county, town or village (default).
	Level string `json:"level"`
	Limit int    `json:"limit"`
}

// severities, worst first, with the rank used to colour devices (state_rank).
var severities = []string{"fire", "alarm", "warning", "fault", "offline"}

func severityRank(s string) int64 {
	switch s {
	case "fire":
		return 5
	case "alarm":
		return 4
	case "warning":
		return 3
	case "fault":
		return 2
	case "offline":
		return 1
	}
	return 0
}

// anyValue reports values that mean "no filter": what Grafana sends for an
// empty variable or an All option.
func anyValue(s string) bool {
	switch strings.TrimSpace(s) {
	case "", "all", "All", "$__all", "*", ".*":
		return true
	}
	return false
}

var gridPrefix = regexp.MustCompile(`^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})$`)

// normalise validates q and clears "any" values.
func (q *Query) normalise() error {
	if anyValue(q.State) {
		q.State = ""
	}
	if anyValue(q.Severity) {
		q.Severity = ""
	} else if severityRank(q.Severity) == 0 {
		return fmt.Errorf("severity %q: want one of %s", q.Severity, strings.Join(severities, ", "))
	}
	q.Grid = strings.TrimSpace(q.Grid)
	if anyValue(q.Grid) {
		q.Grid = ""
	} else if !gridPrefix.MatchString(q.Grid) {
		return fmt.Errorf("grid %q: want an administrative code prefix of 2, 4, 6, 9 or 12 digits", q.Grid)
	}
	if anyValue(q.Device) {
		q.Device = ""
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 1000
	}
	return nil
}

// QueryData answers each query of the request independently: one failing
// query does not fail the others.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, dq := range req.Queries {
		frames, err := d.query(ctx, req.PluginContext, dq)
		if err != nil {
			resp.Responses[dq.RefID] = backend.ErrDataResponse(statusOf(err), err.Error())
			continue
		}
		resp.Responses[dq.RefID] = backend.DataResponse{Frames: frames}
	}
	return resp, nil
}

func statusOf(err error) backend.Status {
	switch {
	case errors.Is(err, ErrUnauthorized):
		return backend.StatusUnauthorized
	case errors.Is(err, errBadQuery):
		return backend.StatusBadRequest
	}
	return backend.StatusBadGateway
}

var errBadQuery = errors.New("bad query")

func (d *Datasource) query(ctx context.Context, pctx backend.PluginContext, dq backend.DataQuery) (data.Frames, error) {
	var q Query
	if len(dq.JSON) > 0 {
		if err := json.Unmarshal(dq.JSON, &q); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadQuery, err)
		}
	}
	if dq.QueryType != "" {
		q.QueryType = dq.QueryType
	}
	if err := q.normalise(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadQuery, err)
	}
	tr := dq.TimeRange
	switch q.QueryType {
	case QueryAlarms, "":
		as, err := d.client.Alarms(ctx, AlarmFilter{State: q.State, Severity: q.Severity, Grid: q.Grid,
			Device: q.Device, Since: tr.From, Until: tr.To, Limit: q.Limit})
		if err != nil {
			return nil, err
		}
		return data.Frames{AlarmsFrame(as)}, nil
	case QueryDevices:
		return d.devices(ctx, q)
	case QueryGrid:
		return d.grid(ctx, q)
	case QueryOpenBySeverity:
		as, err := d.openAlarms(ctx, q.Grid)
		if err != nil {
			return nil, err
		}
		return data.Frames{OpenBySeverityFrame(as)}, nil
	case QueryStats:
		return d.stats(ctx, q, tr.From, tr.To)
	case QueryTransitions:
		f := TransitionsFrame(nil)
		uid := ""
		if pctx.DataSourceInstanceSettings != nil {
			uid = pctx.DataSourceInstanceSettings.UID
		}
		f.SetMeta(&data.FrameMeta{Channel: live.Channel{Scope: live.ScopeDatasource, Namespace: uid,
			Path: StreamPath(q.Grid, q.Severity)}.String()})
		return data.Frames{f}, nil
	}
	return nil, fmt.Errorf("%w: unknown queryType %q (want alarms, devices, grid, open_by_severity, stats or transitions)", errBadQuery, q.QueryType)
}

// openAlarms lists the open alarms under grid (at most 1000, the API's cap).
func (d *Datasource) openAlarms(ctx context.Context, grid string) ([]Alarm, error) {
	return d.client.Alarms(ctx, AlarmFilter{State: "open", Grid: grid, Limit: 1000})
}

// AlarmsFrame turns alarms into a table frame, one row per alarm.
func AlarmsFrame(as []Alarm) *data.Frame {
	n := len(as)
	raised := make([]time.Time, n)
	cols := map[string][]string{}
	names := []string{"id", "severity", "severity_zh", "state", "rule", "device", "kind", "metric", "unit", "grid", "station", "message"}
	for _, c := range names {
		cols[c] = make([]string, n)
	}
	open := make([]bool, n)
	channel := make([]int64, n)
	value := make([]float64, n)
	threshold := make([]float64, n)
	rank := make([]int64, n)
	cleared := make([]*time.Time, n)
	closed := make([]*time.Time, n)
	for i, a := range as {
		raised[i] = a.RaisedAt
		for _, c := range names {
			var v string
			switch c {
			case "id":
				v = a.ID
			case "severity":
				v = a.Severity
			case "severity_zh":
				v = a.SeverityZH
			case "state":
				v = a.State
			case "rule":
				v = a.Rule
			case "device":
				v = a.Device
			case "kind":
				v = a.Kind
			case "metric":
				v = a.Metric
			case "unit":
				v = a.Unit
			case "grid":
				v = a.Grid
			case "station":
				v = a.Station
			case "message":
				v = a.Message
			}
			cols[c][i] = v
		}
		open[i] = a.IsOpen()
		channel[i], value[i], threshold[i] = a.Channel, a.Value, a.Threshold
		rank[i] = severityRank(a.Severity)
		cleared[i], closed[i] = a.ClearedAt, a.ClosedAt
	}
	f := data.NewFrame("alarms", data.NewField("raised_at", nil, raised))
	for _, c := range names[:4] {
		f.Fields = append(f.Fields, data.NewField(c, nil, cols[c]))
	}
	f.Fields = append(f.Fields, data.NewField("open", nil, open))
	for _, c := range names[4:9] {
		f.Fields = append(f.Fields, data.NewField(c, nil, cols[c]))
	}
	f.Fields = append(f.Fields,
		data.NewField("channel", nil, channel),
		data.NewField("value", nil, value),
		data.NewField("threshold", nil, threshold))
	for _, c := range names[9:] {
		f.Fields = append(f.Fields, data.NewField(c, nil, cols[c]))
	}
	f.Fields = append(f.Fields,
		data.NewField("cleared_at", nil, cleared),
		data.NewField("closed_at", nil, closed),
		data.NewField("severity_rank", nil, rank))
	return f
}

// OpenBySeverityFrame counts open alarms per severity: one row, one field
// per severity, worst first.
func OpenBySeverityFrame(as []Alarm) *data.Frame {
	counts := map[string]int64{}
	for _, a := range as {
		if a.IsOpen() {
			counts[a.Severity]++
		}
	}
	f := data.NewFrame("open_by_severity")
	for _, s := range severities {
		f.Fields = append(f.Fields, data.NewField(s, nil, []int64{counts[s]}))
	}
	return f
}

// deviceState is the worst open alarm of the device, else offline or
// normal.
func deviceState(d Device, worst map[string]string) string {
	if s, ok := worst[d.ID]; ok {
		return s
	}
	if !d.Online {
		return "offline"
	}
	return "normal"
}

// worstOpen maps each device with open alarms to its worst severity.
func worstOpen(as []Alarm) map[string]string {
	worst := map[string]string{}
	for _, a := range as {
		if a.IsOpen() && severityRank(a.Severity) > severityRank(worst[a.Device]) {
			worst[a.Device] = a.Severity
		}
	}
	return worst
}

func (d *Datasource) devices(ctx context.Context, q Query) (data.Frames, error) {
	var ds []Device
	if q.Device != "" {
		dev, err := d.client.Device(ctx, q.Device)
		var ae *apiError
		if errors.As(err, &ae) && ae.status == 404 {
			return data.Frames{DevicesFrame(nil, nil)}, nil
		}
		if err != nil {
			return nil, err
		}
		ds = []Device{dev}
	} else {
		var err error
		if ds, err = d.client.Devices(ctx, q.Grid, q.Offline); err != nil {
			return nil, err
		}
	}
	as, err := d.openAlarms(ctx, q.Grid)
	if err != nil {
		return nil, err
	}
	return data.Frames{DevicesFrame(ds, worstOpen(as))}, nil
}

// DevicesFrame turns devices into a table frame with their state: the
// worst open alarm, offline or normal, and state_rank for colouring
// (normal 0, offline 1, fault 2, warning 3, alarm 4, fire 5).
func DevicesFrame(ds []Device, worst map[string]string) *data.Frame {
	n := len(ds)
	id, kind, grid, station, state := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	online := make([]bool, n)
	rank := make([]int64, n)
	lastSeen := make([]*time.Time, n)
	battery, rssi, lat, lon := make([]*float64, n), make([]*float64, n), make([]*float64, n), make([]*float64, n)
	for i, dv := range ds {
		id[i], kind[i], grid[i], station[i], online[i] = dv.ID, dv.Kind, dv.Grid, dv.Station, dv.Online
		state[i] = deviceState(dv, worst)
		rank[i] = severityRank(state[i])
		lastSeen[i], battery[i], rssi[i], lat[i], lon[i] = dv.LastSeen, dv.BatteryPct, dv.RSSIdBm, dv.Lat, dv.Lon
	}
	return data.NewFrame("devices",
		data.NewField("id", nil, id),
		data.NewField("kind", nil, kind),
		data.NewField("grid", nil, grid),
		data.NewField("station", nil, station),
		data.NewField("state", nil, state),
		data.NewField("state_rank", nil, rank),
		data.NewField("online", nil, online),
		data.NewField("last_seen", nil, lastSeen),
		data.NewField("battery_pct", nil, battery),
		data.NewField("rssi_dbm", nil, rssi),
		data.NewField("lat", nil, lat),
		data.NewField("lon", nil, lon),
	)
}

// StreamPath names the live channel of alarm transitions under a grid
// prefix and of one severity: "transitions/<grid|all>/<severity|all>".
func StreamPath(grid, severity string) string {
	if grid == "" {
		grid = "all"
	}
	if severity == "" {
		severity = "all"
	}
	return "transitions/" + url.PathEscape(grid) + "/" + url.PathEscape(severity)
}
