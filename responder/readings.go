package responder

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/influx"
)

// Readings reads the values firewatch stored in InfluxDB: *influx.Reader.
// firewatch keeps no reading per device in memory, and the hot path keeps
// none for the page's sake (docs/decisions.md, issue 16).
type Readings interface {
	Series(ctx context.Context, measurement, device, field string, ch int, since time.Time, every time.Duration) ([]influx.Point, error)
	Last(ctx context.Context, measurement string, devices []string, field string, since time.Time) (map[string]influx.Point, error)
}

const (
	// chartSpan and chartStep: the page's chart is the last hour as the
	// peak of each minute.
	chartSpan = time.Hour
	chartStep = time.Minute
	// pressureField is a hydrant's pressure; pressureSpan how far back its
	// newest value is looked for (a hydrant reports at least hourly, so
	// a value older than an hour is shown as old, not hidden).
	pressureField = "pressure_mpa"
	pressureSpan  = 24 * time.Hour
)

// readingsView is GET /r/{id}/readings: the chart of the alarm's device and
// the nearest hydrants' newest pressure. It is a request of its own, after
// the page has shown the alarm, so that a slow or absent InfluxDB never
// delays the page or a tap.
type readingsView struct {
	// Available is false when there is no InfluxDB to ask or it did not
	// answer; Error then says so for people.
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"`
	Chart     *chart `json:"chart,omitempty"`
	// Hydrants maps a hydrant of the page to its newest pressure.
	Hydrants map[string]pressure `json:"hydrants"`
	Now      time.Time           `json:"now"`
}

type chart struct {
	Metric    string       `json:"metric"`
	MetricZH  string       `json:"metric_zh"`
	Unit      string       `json:"unit"`
	Channel   int          `json:"channel,omitempty"`
	Threshold *float64     `json:"threshold,omitempty"`
	Event     bool         `json:"event,omitempty"`
	From      time.Time    `json:"from"`
	To        time.Time    `json:"to"`
	Points    []chartPoint `json:"points"`
}

type chartPoint struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

type pressure struct {
	MPa float64   `json:"mpa"`
	At  time.Time `json:"at"`
	// Old: older than an hour, the longest a hydrant stays silent.
	Old bool `json:"old"`
}

func (s *Server) serveReadings(w http.ResponseWriter, r *http.Request, c Claims) {
	a, err := s.cfg.Alarms.Alarm(r.Context(), c.Alarm)
	if err != nil {
		s.alarmError(w, c.Alarm, err)
		return
	}
	now := time.Now()
	v := readingsView{Hydrants: map[string]pressure{}, Now: now}
	if s.cfg.Readings == nil {
		v.Error = "未配置数据库，无法显示历史数据"
		writeJSON(w, http.StatusOK, v)
		return
	}
	d, ok := s.led().LookupID(a.Device)
	if !ok {
		v.Available = true
		writeJSON(w, http.StatusOK, v)
		return
	}
	ch := chartOf(a, d, now)
	var hy []string
	for _, h := range s.makeView(a, c).Hydrants {
		hy = append(hy, h.ID)
	}
	// The two queries run side by side: each has the reader's timeout.
	type series struct {
		pts []influx.Point
		err error
	}
	sc := make(chan series, 1)
	go func() {
		var x series
		if ch != nil {
			x.pts, x.err = s.cfg.Readings.Series(r.Context(), d.Kind.String(), d.ID, ch.Metric, ch.Channel, ch.From, chartStep)
		}
		sc <- x
	}()
	last, herr := s.cfg.Readings.Last(r.Context(), devices.KindHydrant.String(), hy, pressureField, now.Add(-pressureSpan))
	x := <-sc
	if x.err != nil || herr != nil {
		s.met.readingsFailed.Inc()
		s.log.Warn("responder: reading InfluxDB failed", "alarm", a.ID, "series_err", x.err, "hydrants_err", herr)
		v.Error = "实时数据暂不可用（数据库无响应）"
	}
	v.Available = x.err == nil && herr == nil
	if ch != nil && x.err == nil {
		for _, p := range x.pts {
			ch.Points = append(ch.Points, chartPoint{T: p.T, V: p.V})
		}
		v.Chart = ch
	}
	if herr == nil {
		for id, p := range last {
			v.Hydrants[id] = pressure{MPa: p.V, At: p.T, Old: now.Sub(p.T) > time.Hour}
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// chartOf is the chart of an alarm: its own metric and channel over the
// last hour.
func chartOf(a alarms.Alarm, d *devices.Device, now time.Time) *chart {
	mt, ok := devices.MetricByName(d.Kind, a.Metric)
	if !ok {
		return nil
	}
	info := mt.Info()
	to := now
	c := &chart{Metric: a.Metric, MetricZH: info.ZH, Unit: info.Unit, Channel: a.Channel, Event: info.Event,
		From: to.Add(-chartSpan), To: to, Points: []chartPoint{}}
	if !info.Event && !math.IsNaN(a.Threshold) && a.Threshold != 0 {
		th := a.Threshold
		c.Threshold = &th
	}
	return c
}
