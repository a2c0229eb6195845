package alarms

import (
	"context"
	"slices"
	"sort"
	"time"
)

// StationStats is the response-time accounting (考核) of one station over a
// period: how many alarms it got and how fast they were acknowledged and
// reached, against the targets of DOMAIN.md.
type StationStats struct {
	Station string `json:"station"`
	Alarms  int    `json:"alarms"`
	// FalseAlarms counts alarms closed as false alarms (误报).
	FalseAlarms int `json:"false_alarms"`
	// Acknowledge and Arrive are seconds from raised_at, over the alarms
	// that got there.
	Acknowledge Quantiles `json:"acknowledge"`
	Arrive      Quantiles `json:"arrive"`
	// RespondedInTime and ArrivedInTime are the shares (0–1) of those
	// alarms within 1 and 3 minutes.
	RespondedInTime float64 `json:"responded_in_time"`
	ArrivedInTime   float64 `json:"arrived_in_time"`
}

// Quantiles summarises durations in seconds.
type Quantiles struct {
	N      int      `json:"n"`
	Median *float64 `json:"median_s,omitempty"`
	P90    *float64 `json:"p90_s,omitempty"`
}

// statsLimit bounds the alarms one statistics request reads.
const statsLimit = 20000

// Stats computes the response times per station of the alarms f selects
// (grid, time range; f.Limit is ignored), plus a "" entry for all of them.
func (m *Manager) Stats(ctx context.Context, f Filter) ([]StationStats, error) {
	f.all = true
	ids, err := m.store.listIDs(ctx, f)
	if err != nil {
		return nil, err
	}
	type acc struct {
		n, falseAlarms int
		ack, arr       []float64
	}
	by := map[string]*acc{}
	get := func(st string) *acc {
		if by[st] == nil {
			by[st] = &acc{}
		}
		return by[st]
	}
	for _, id := range ids {
		a, err := m.store.get(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, st := range []string{a.Station, ""} {
			x := get(st)
			x.n++
			if a.State == StateFalseAlarm {
				x.falseAlarms++
			}
			if r := a.Response; r != nil {
				if r.Acknowledged != nil {
					x.ack = append(x.ack, *r.Acknowledged)
				}
				if r.Arrived != nil {
					x.arr = append(x.arr, *r.Arrived)
				}
			}
		}
	}
	out := make([]StationStats, 0, len(by))
	for st, x := range by {
		s := StationStats{Station: st, Alarms: x.n, FalseAlarms: x.falseAlarms,
			Acknowledge: quantiles(x.ack), Arrive: quantiles(x.arr),
			RespondedInTime: share(x.ack, RespondTarget), ArrivedInTime: share(x.arr, ArriveTarget)}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Station < out[j].Station })
	return out, nil
}

func quantiles(v []float64) Quantiles {
	q := Quantiles{N: len(v)}
	if len(v) == 0 {
		return q
	}
	slices.Sort(v)
	at := func(p float64) *float64 {
		x := v[min(len(v)-1, int(p*float64(len(v)-1)+0.5))]
		return &x
	}
	q.Median, q.P90 = at(0.5), at(0.9)
	return q
}

func share(v []float64, target time.Duration) float64 {
	if len(v) == 0 {
		return 0
	}
	n := 0
	for _, x := range v {
		if x <= target.Seconds() {
			n++
		}
	}
	return float64(n) / float64(len(v))
}
