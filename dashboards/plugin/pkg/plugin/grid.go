package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Risk colours of 三色预警 (docs/grafana.md).
const (
	RiskRed    = "red"
	RiskYellow = "yellow"
	RiskGreen  = "green"
)

// Offline ratios from which a grid turns yellow or red.
const (
	YellowOfflineRatio = 0.10
	RedOfflineRatio    = 0.30
)

// GridSummary is one grid's row of the summary.
type GridSummary struct {
	Grid         string
	Devices      int64
	Offline      int64
	Open         map[string]int64 // open alarms per severity
	OfflineRatio *float64         // nil when the devices API is not available
	Risk         string
}

// Risk is the 三色预警 rule:
//
//	red    an open fire (火警) or alarm (报警), or at least 30 % of the devices offline;
//	yellow an open warning (预警) or fault (故障), or at least 10 % offline;
//	green  otherwise.
//
// Offline alarms (离线) count through the offline ratio, not one by one: one
// silent smoke detector in a village of fifty is maintenance, not risk.
func Risk(open map[string]int64, offlineRatio *float64) string {
	r := offlineRatio != nil
	switch {
	case open["fire"] > 0 || open["alarm"] > 0 || (r && *offlineRatio >= RedOfflineRatio):
		return RiskRed
	case open["warning"] > 0 || open["fault"] > 0 || (r && *offlineRatio >= YellowOfflineRatio):
		return RiskYellow
	}
	return RiskGreen
}

func riskRank(r string) int64 {
	switch r {
	case RiskRed:
		return 2
	case RiskYellow:
		return 1
	}
	return 0
}

// levelDigits maps a summary level to its code length.
func levelDigits(level string) (int, error) {
	switch level {
	case "", "village":
		return 12, nil
	case "town":
		return 9, nil
	case "county":
		return 6, nil
	}
	return 0, fmt.Errorf("%w: level %q: want village, town or county", errBadQuery, level)
}

// Summarise groups devices and open alarms by the first digits of their
// grid codes. devices may be nil when the devices API is not available;
// then only alarms count and the offline ratio is unknown.
func Summarise(ds []Device, haveDevices bool, as []Alarm, digits int) []GridSummary {
	by := map[string]*GridSummary{}
	row := func(grid string) *GridSummary {
		if len(grid) < digits {
			return nil
		}
		key := grid[:digits]
		s := by[key]
		if s == nil {
			s = &GridSummary{Grid: key, Open: map[string]int64{}}
			by[key] = s
		}
		return s
	}
	for _, d := range ds {
		if s := row(d.Grid); s != nil {
			s.Devices++
			if !d.Online {
				s.Offline++
			}
		}
	}
	for _, a := range as {
		if !a.IsOpen() {
			continue
		}
		if s := row(a.Grid); s != nil {
			s.Open[a.Severity]++
		}
	}
	out := make([]GridSummary, 0, len(by))
	for _, s := range by {
		if haveDevices && s.Devices > 0 {
			r := float64(s.Offline) / float64(s.Devices)
			s.OfflineRatio = &r
		}
		s.Risk = Risk(s.Open, s.OfflineRatio)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if ri, rj := riskRank(out[i].Risk), riskRank(out[j].Risk); ri != rj {
			return ri > rj
		}
		return out[i].Grid < out[j].Grid
	})
	return out
}

// GridFrame turns a summary into a table frame.
func GridFrame(rows []GridSummary) *data.Frame {
	n := len(rows)
	grid, risk := make([]string, n), make([]string, n)
	rank, devs, off := make([]int64, n), make([]int64, n), make([]int64, n)
	ratio := make([]*float64, n)
	open := map[string][]int64{}
	for _, s := range severities {
		open[s] = make([]int64, n)
	}
	for i, r := range rows {
		grid[i], risk[i], rank[i], devs[i], off[i], ratio[i] = r.Grid, r.Risk, riskRank(r.Risk), r.Devices, r.Offline, r.OfflineRatio
		for _, s := range severities {
			open[s][i] = r.Open[s]
		}
	}
	f := data.NewFrame("grid",
		data.NewField("grid", nil, grid),
		data.NewField("risk", nil, risk),
		data.NewField("risk_rank", nil, rank))
	for _, s := range severities {
		f.Fields = append(f.Fields, data.NewField(s, nil, open[s]))
	}
	f.Fields = append(f.Fields,
		data.NewField("devices", nil, devs),
		data.NewField("offline_devices", nil, off),
		data.NewField("offline_ratio", nil, ratio))
	return f
}

func (d *Datasource) grid(ctx context.Context, q Query) (data.Frames, error) {
	digits, err := levelDigits(q.Level)
	if err != nil {
		return nil, err
	}
	ds, err := d.client.Devices(ctx, q.Grid, false)
	haveDevices := true
	if errors.Is(err, ErrNoDevicesAPI) {
		haveDevices = false
	} else if err != nil {
		return nil, err
	}
	as, err := d.openAlarms(ctx, q.Grid)
	if err != nil {
		return nil, err
	}
	f := GridFrame(Summarise(ds, haveDevices, as, digits))
	if !haveDevices {
		f.AppendNotices(data.Notice{Severity: data.NoticeSeverityWarning,
			Text: "firewatch does not serve the devices API: risk colours count alarms only, offline ratios are unknown"})
	}
	return data.Frames{f}, nil
}
