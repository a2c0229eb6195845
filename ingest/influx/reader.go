package influx

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
)

// Reader reads back what the Writer stored: a device's recent values for
// the responder page (issue 16). It runs Flux through the query API, which
// InfluxDB 1.8 (with flux-enabled), 2.x and 3.x answer alike. It is off the
// hot path: every query has its own deadline and a failure is the caller's
// to show, never retried here.
type Reader struct {
	client influxdb2.Client
	org    string
	bucket string
	// Timeout bounds one query (default 2 s).
	Timeout time.Duration
}

// Point is one value at one time.
type Point struct {
	T time.Time
	V float64
}

// NewReader returns a Reader of cfg's InfluxDB (URL, Token, Org, Bucket).
func NewReader(cfg Config) *Reader {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	opts := influxdb2.DefaultOptions().SetHTTPClient(&http.Client{Transport: tr})
	c := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	return &Reader{client: c, org: cfg.Org, bucket: cfg.Bucket, Timeout: 2 * time.Second}
}

// Close releases the Reader's connections.
func (r *Reader) Close() { r.client.Close() }

// Series returns field of device (measurement is its kind) on channel ch
// (0: a metric without channels) since since, as the largest value of each
// window of every (a fire shows as its peak, not averaged away), oldest
// first.
func (r *Reader) Series(ctx context.Context, measurement, device, field string, ch int, since time.Time, every time.Duration) ([]Point, error) {
	chf := `not exists r.ch`
	if ch > 0 {
		chf = `r.ch == "` + strconv.Itoa(ch) + `"`
	}
	q := `from(bucket: ` + fluxString(r.bucket) + `)
  |> range(start: ` + since.UTC().Format(time.RFC3339Nano) + `)
  |> filter(fn: (r) => r._measurement == ` + fluxString(measurement) + ` and r.device == ` + fluxString(device) +
		` and r._field == ` + fluxString(field) + ` and ` + chf + `)
  |> group()
  |> aggregateWindow(every: ` + fluxDuration(every) + `, fn: max, createEmpty: false)
  |> sort(columns: ["_time"])`
	out := []Point{}
	err := r.run(ctx, q, func(rec recordLike) {
		if v, ok := toFloat(rec.Value()); ok {
			out = append(out, Point{T: rec.Time(), V: v})
		}
	})
	return out, err
}

// Last returns the newest value of field since since for each of
// devices (all of kind measurement) that has one.
func (r *Reader) Last(ctx context.Context, measurement string, devices []string, field string, since time.Time) (map[string]Point, error) {
	out := map[string]Point{}
	if len(devices) == 0 {
		return out, nil
	}
	ds := make([]string, len(devices))
	for i, d := range devices {
		ds[i] = `r.device == ` + fluxString(d)
	}
	q := `from(bucket: ` + fluxString(r.bucket) + `)
  |> range(start: ` + since.UTC().Format(time.RFC3339Nano) + `)
  |> filter(fn: (r) => r._measurement == ` + fluxString(measurement) + ` and r._field == ` + fluxString(field) +
		` and (` + strings.Join(ds, " or ") + `))
  |> group(columns: ["device"])
  |> last()`
	err := r.run(ctx, q, func(rec recordLike) {
		d, _ := rec.ValueByKey("device").(string)
		if v, ok := toFloat(rec.Value()); ok && d != "" {
			if p, seen := out[d]; !seen || rec.Time().After(p.T) {
				out[d] = Point{T: rec.Time(), V: v}
			}
		}
	})
	return out, err
}

type recordLike interface {
	Time() time.Time
	Value() any
	ValueByKey(string) any
}

func (r *Reader) run(ctx context.Context, q string, each func(recordLike)) error {
	t := r.Timeout
	if t <= 0 {
		t = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	// A QueryAPI per query: influxdb-client-go v2.14 caches the query URL
	// in it without a lock on the read (a data race between two queries
	// of one QueryAPI); making one is an allocation, not a connection.
	var qa api.QueryAPI = r.client.QueryAPI(r.org)
	res, err := qa.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("influx query: %w", err)
	}
	defer res.Close()
	for res.Next() {
		each(res.Record())
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("influx query: %w", err)
	}
	return nil
}

// fluxString quotes s as a Flux string literal: backslash, quote and the
// "${" of string interpolation are escaped.
func fluxString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '\\', '"', '$':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}

func fluxDuration(d time.Duration) string {
	if d < time.Second {
		d = time.Second
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}
