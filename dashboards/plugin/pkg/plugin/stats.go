package plugin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Response targets of micro fire stations: 1分钟响应、3分钟到场 (DOMAIN.md).
const (
	RespondTarget = time.Minute
	ArriveTarget  = 3 * time.Minute
)

// maxStatsAlarms bounds the alarms whose history one stats query reads when
// firewatch has no statistics endpoint (one request per alarm).
const maxStatsAlarms = 500

// Quantiles summarises durations in seconds, as GET /api/v1/stats/response
// sends them.
type Quantiles struct {
	N      int64    `json:"n"`
	Median *float64 `json:"median_s"`
	P90    *float64 `json:"p90_s"`
}

// StationStats is the response-time accounting of one station; Station ""
// is all stations together.
type StationStats struct {
	Station         string    `json:"station"`
	Alarms          int64     `json:"alarms"`
	FalseAlarms     int64     `json:"false_alarms"`
	Acknowledge     Quantiles `json:"acknowledge"`
	Arrive          Quantiles `json:"arrive"`
	RespondedInTime float64   `json:"responded_in_time"`
	ArrivedInTime   float64   `json:"arrived_in_time"`
}

// ResponseStats reads firewatch's response-time accounting
// (GET /api/v1/stats/response). ok is false when this firewatch does not
// serve it.
func (c *Client) ResponseStats(ctx context.Context, grid string, since, until time.Time) (ss []StationStats, ok bool, err error) {
	q := url.Values{}
	if grid != "" {
		q.Set("grid", grid)
	}
	if !since.IsZero() {
		q.Set("since", since.Format(time.RFC3339))
	}
	if !until.IsZero() {
		q.Set("until", until.Format(time.RFC3339))
	}
	var out struct {
		Stations []StationStats `json:"stations"`
	}
	_, err = c.get(ctx, "/api/v1/stats/response", q, &out)
	var ae *apiError
	if errors.As(err, &ae) && (ae.status == http.StatusNotFound || ae.status == http.StatusMethodNotAllowed) {
		return nil, false, nil
	}
	return out.Stations, err == nil, err
}

// StatsFromHistory computes the accounting of GET /api/v1/stats/response
// from the alarms' histories, for a firewatch that does not serve it:
// seconds from raised_at to the first response by a person and to
// arrival, over the alarms that got there, and the shares of those within
// the targets; plus a "" row for all stations.
func StatsFromHistory(as []Alarm) []StationStats {
	type acc struct {
		n, falseAlarms int64
		ack, arr       []float64
	}
	by := map[string]*acc{}
	for _, a := range as {
		var ack, arr *float64
		for _, c := range a.History {
			if c.From == c.To {
				continue // an escalation or a note
			}
			d := c.At.Sub(a.RaisedAt).Seconds()
			if ack == nil && c.To == "acknowledged" {
				ack = &d
			}
			if arr == nil && c.To == "arrived" {
				arr = &d
			}
		}
		for _, st := range []string{a.Station, ""} {
			x := by[st]
			if x == nil {
				x = &acc{}
				by[st] = x
			}
			x.n++
			if a.State == "false_alarm" {
				x.falseAlarms++
			}
			if ack != nil {
				x.ack = append(x.ack, *ack)
			}
			if arr != nil {
				x.arr = append(x.arr, *arr)
			}
		}
	}
	out := make([]StationStats, 0, len(by))
	for st, x := range by {
		out = append(out, StationStats{Station: st, Alarms: x.n, FalseAlarms: x.falseAlarms,
			Acknowledge: quantiles(x.ack), Arrive: quantiles(x.arr),
			RespondedInTime: share(x.ack, RespondTarget), ArrivedInTime: share(x.arr, ArriveTarget)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Station < out[j].Station })
	return out
}

// quantiles by nearest rank, as firewatch computes them.
func quantiles(v []float64) Quantiles {
	q := Quantiles{N: int64(len(v))}
	if len(v) == 0 {
		return q
	}
	sort.Float64s(v)
	at := func(p float64) *float64 {
		x := v[min(len(v)-1, int(p*float64(len(v)-1)+0.5))]
		return &x
	}
	q.Median, q.P90 = at(0.5), at(0.9)
	return q
}

func share(v []float64, target time.Duration) float64 {
	n := 0
	for _, x := range v {
		if x <= target.Seconds() {
			n++
		}
	}
	if len(v) == 0 {
		return 0
	}
	return float64(n) / float64(len(v))
}

// StatsFrame turns station statistics into a table frame. Shares are empty
// where no alarm got that far. The all-stations row is named 全部.
func StatsFrame(ss []StationStats) *data.Frame {
	n := len(ss)
	station := make([]string, n)
	alarms, falseAlarms, acked, arrived := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	f64 := func() []*float64 { return make([]*float64, n) }
	ackMed, ackP90, ackWithin, arrMed, arrP90, arrWithin := f64(), f64(), f64(), f64(), f64(), f64()
	for i, s := range ss {
		station[i] = s.Station
		if s.Station == "" {
			station[i] = "全部 all"
		}
		alarms[i], falseAlarms[i], acked[i], arrived[i] = s.Alarms, s.FalseAlarms, s.Acknowledge.N, s.Arrive.N
		ackMed[i], ackP90[i], arrMed[i], arrP90[i] = s.Acknowledge.Median, s.Acknowledge.P90, s.Arrive.Median, s.Arrive.P90
		if s.Acknowledge.N > 0 {
			ackWithin[i] = &ss[i].RespondedInTime
		}
		if s.Arrive.N > 0 {
			arrWithin[i] = &ss[i].ArrivedInTime
		}
	}
	return data.NewFrame("stats",
		data.NewField("station", nil, station),
		data.NewField("alarms", nil, alarms),
		data.NewField("false_alarms", nil, falseAlarms),
		data.NewField("acknowledged", nil, acked),
		data.NewField("ack_median_s", nil, ackMed),
		data.NewField("ack_p90_s", nil, ackP90),
		data.NewField("ack_within_1m", nil, ackWithin),
		data.NewField("arrived", nil, arrived),
		data.NewField("arrive_median_s", nil, arrMed),
		data.NewField("arrive_p90_s", nil, arrP90),
		data.NewField("arrive_within_3m", nil, arrWithin),
	)
}

// stats answers the response-time query: from firewatch's statistics
// endpoint when it has one and no severity is selected (the endpoint does
// not filter by severity), else from the alarms' histories (8 requests at
// a time, at most maxStatsAlarms alarms).
func (d *Datasource) stats(ctx context.Context, q Query, from, to time.Time) (data.Frames, error) {
	if q.Severity == "" {
		ss, ok, err := d.client.ResponseStats(ctx, q.Grid, from, to)
		if err != nil {
			return nil, err
		}
		if ok {
			return data.Frames{StatsFrame(ss)}, nil
		}
	}
	as, err := d.client.Alarms(ctx, AlarmFilter{Severity: q.Severity, Grid: q.Grid,
		Since: from, Until: to, Limit: maxStatsAlarms})
	if err != nil {
		return nil, err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, 8)
	)
	for i := range as {
		if as[i].History != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(a *Alarm) {
			defer wg.Done()
			defer func() { <-sem }()
			full, err := d.client.Alarm(ctx, a.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			a.History = full.History
		}(&as[i])
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	f := StatsFrame(StatsFromHistory(as))
	if len(as) == maxStatsAlarms {
		f.AppendNotices(data.Notice{Severity: data.NoticeSeverityWarning,
			Text: "only the newest 500 alarms of the time range are counted: narrow the range or the grid"})
	}
	return data.Frames{f}, nil
}
