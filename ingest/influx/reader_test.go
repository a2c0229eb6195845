package influx

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestReaderAgainstInfluxDB reads back from a real InfluxDB 1.8 what the
// responder page shows: a device's last hour as per-minute peaks of one
// metric on one channel, and the newest pressure of several hydrants. A
// device id with Flux's quote, backslash and "${" reads as itself.
func TestReaderAgainstInfluxDB(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	now := time.Now().Truncate(time.Minute)
	ms := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	odd := `el-"\${x}`
	var lines strings.Builder
	fmt.Fprintf(&lines, "electrical,device=el-1,kind=electrical residual_current_ma=120 %d\n", ms(-50*time.Minute))
	fmt.Fprintf(&lines, "electrical,device=el-1,kind=electrical residual_current_ma=180 %d\n", ms(-20*time.Minute))
	fmt.Fprintf(&lines, "electrical,device=el-1,kind=electrical residual_current_ma=330 %d\n", ms(-20*time.Minute+10*time.Second))
	fmt.Fprintf(&lines, "electrical,ch=3,device=el-1,kind=electrical cable_temp_c=99 %d\n", ms(-10*time.Minute))
	fmt.Fprintf(&lines, "electrical,device=el-1,kind=electrical residual_current_ma=999 %d\n", ms(-2*time.Hour))   // before the hour
	fmt.Fprintf(&lines, "electrical,device=el-2,kind=electrical residual_current_ma=777 %d\n", ms(-5*time.Minute)) // another device
	fmt.Fprintf(&lines, "electrical,device=%s,kind=electrical residual_current_ma=5 %d\n", odd, ms(-5*time.Minute))
	fmt.Fprintf(&lines, "hydrant,device=hy-1,kind=hydrant pressure_mpa=0.31 %d\n", ms(-30*time.Minute))
	fmt.Fprintf(&lines, "hydrant,device=hy-1,kind=hydrant pressure_mpa=0.285 %d\n", ms(-3*time.Minute))
	fmt.Fprintf(&lines, "hydrant,device=hy-2,kind=hydrant pressure_mpa=0.42 %d\n", ms(-90*time.Minute))
	fmt.Fprintf(&lines, "hydrant,device=hy-3,kind=hydrant pressure_mpa=0.5 %d\n", ms(-1*time.Minute))
	db.Write(t, lines.String())

	r := NewReader(Config{URL: db.URL, Bucket: db.Bucket})
	defer r.Close()
	r.Timeout = 20 * time.Second // Flux on a loaded 2-core machine
	ctx := context.Background()
	got, err := r.Series(ctx, "electrical", "el-1", "residual_current_ma", 0, now.Add(-time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].V != 120 || got[1].V != 330 || !got[0].T.Before(got[1].T) {
		t.Errorf("last hour of el-1: %+v, want the peaks 120 and 330, oldest first", got)
	}
	got, err = r.Series(ctx, "electrical", "el-1", "cable_temp_c", 3, now.Add(-time.Hour), time.Minute)
	if err != nil || len(got) != 1 || got[0].V != 99 {
		t.Errorf("channel 3: %+v, %v", got, err)
	}
	got, err = r.Series(ctx, "electrical", odd, "residual_current_ma", 0, now.Add(-time.Hour), time.Minute)
	if err != nil || len(got) != 1 || got[0].V != 5 {
		t.Errorf("device %q: %+v, %v", odd, got, err)
	}
	// The page runs both queries at once, the first of a new Reader (the
	// client library's query object raced with itself on its first
	// queries: -race checks it here).
	r2 := NewReader(Config{URL: db.URL, Bucket: db.Bucket})
	defer r2.Close()
	r2.Timeout = r.Timeout
	seriesDone := make(chan error, 1)
	go func() {
		_, err := r2.Series(ctx, "electrical", "el-1", "residual_current_ma", 0, now.Add(-time.Hour), time.Minute)
		seriesDone <- err
	}()
	last, err := r2.Last(ctx, "hydrant", []string{"hy-1", "hy-2", "hy-9"}, "pressure_mpa", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-seriesDone; err != nil {
		t.Fatal(err)
	}
	if p, ok := last["hy-1"]; len(last) != 1 || !ok || p.V != 0.285 || !p.T.Equal(now.Add(-3*time.Minute)) {
		t.Errorf("newest pressures: %+v, want hy-1 only at 0.285 (hy-2 is older than the hour, hy-3 not asked)", last)
	}
}

// TestReaderDown: an InfluxDB that does not answer is an error within the
// Reader's timeout, not a hang.
func TestReaderDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := NewReader(Config{URL: "http://" + ln.Addr().String()})
	defer r.Close()
	r.Timeout = 300 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, err := r.Last(context.Background(), "hydrant", []string{"hy-1"}, "pressure_mpa", time.Now().Add(-time.Hour))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("no error from a silent InfluxDB")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the query outlived its timeout by far")
	}
}
