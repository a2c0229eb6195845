package gateway

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The forwarder retries spool errors with a backoff from forwardMinBackoff
// doubling to forwardMaxBackoff, and logs them at most every
// forwardLogEvery.
const (
	forwardMinBackoff = 250 * time.Millisecond
	forwardMaxBackoff = 30 * time.Second
	forwardLogEvery   = time.Minute
)

// forwarderHealth is what the forwarder reports about itself.
type forwarderHealth struct {
	errors atomic.Uint64 // spool errors the forwarder met (and retried)
	logged time.Time     // last error log; only the forwarder uses it
}

// forwardBackoff returns the wait after the n-th spool error in a row.
func forwardBackoff(n int) time.Duration {
	return min(forwardMinBackoff<<min(n-1, 10), forwardMaxBackoff)
}

// spoolHealth is the "spool" object of the status message: whether the
// spool's last file operation worked, its error and corruption counters,
// and the forwarder's errors.
func (g *Gateway) spoolHealth() map[string]any {
	st := g.spool.Stats()
	h := map[string]any{
		"healthy": st.Healthy, "errors": st.Errors, "corrupt": st.Corrupt, "corrupt_bytes": st.CorruptBytes,
		"forward_errors": g.fwd.errors.Load(),
	}
	if st.LastError != "" {
		h["last_error"] = st.LastError
	}
	return h
}

// registerSpoolMetrics exposes the spool's health.
func (g *Gateway) registerSpoolMetrics(reg prometheus.Registerer) {
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	counter("firewatch_spool_errors_total", "Failed file operations of the spool (write, fsync, read, create, rename) since start.",
		func() float64 { return float64(g.spool.Stats().Errors) })
	counter("firewatch_spool_corrupt_total", "Torn, corrupt or unreadable regions of spool segments cut off or set aside since start; each held at least part of one reading.",
		func() float64 { return float64(g.spool.Stats().Corrupt) })
	counter("firewatch_gateway_forward_errors_total", "Spool errors the forwarder met and retried.",
		func() float64 { return float64(g.fwd.errors.Load()) })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "firewatch_spool_healthy", Help: "1 while the spool's latest file operation succeeded."},
		func() float64 {
			if g.spool.Stats().Healthy {
				return 1
			}
			return 0
		}))
}
