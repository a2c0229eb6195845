package broker

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
)

// stormDevices is the size of a reconnect storm: the devices of one node
// of make cluster, or of a village behind one 4G router.
const stormDevices = 300

// stormLedger is a ledger of n smoke detectors with one secret (and one
// real-cost argon2id hash, so that building it costs one run).
func stormLedger(tb testing.TB, n int) (*devices.Ledger, string) {
	tb.Helper()
	const secret = "storm-secret-0123456789"
	h, err := HashSecret([]byte(secret))
	if err != nil {
		tb.Fatal(err)
	}
	var y strings.Builder
	y.WriteString("stations:\n  - {id: st, name: S, grids: [\"450204002\"], endpoint: \"http://127.0.0.1:1/x\"}\ndevices:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - {id: sm-%d, kind: smoke, grid: \"450204002003\", secret_hash: \"%s\"}\n", i, h)
	}
	l, err := devices.ParseLedger("storm.yaml", []byte(y.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return l, secret
}

// storm has n devices reconnect to a from one address (127.0.0.1) with
// valid secrets, as paho does: the first CONNECT within the first second
// (devices notice the loss at different times; seeded), and after each
// refusal again 1 s later, then 2, 4, 5, 5 … s (firesim's
// MaxReconnectInterval). It returns the time until all are admitted.
func storm(tb testing.TB, a *Auth, n int, secret string, seed uint64) time.Duration {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 15))
	starts := make([]time.Duration, n)
	for i := range starts {
		starts[i] = time.Duration(rng.Int64N(int64(time.Second)))
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			user := fmt.Sprintf("sm-%d", i)
			time.Sleep(starts[i]) // the device's own timer, not synchronisation
			for wait := time.Second; ; wait = min(2*wait, 5*time.Second) {
				if _, err := a.Authorize(user, user, "127.0.0.1:40000", []byte(secret)); err == nil {
					return
				}
				if time.Since(t0) > 10*time.Minute {
					tb.Errorf("%s not admitted within 10 min", user)
					return
				}
				time.Sleep(wait) // paho's reconnect interval
			}
		})
	}
	wg.Wait()
	return time.Since(t0)
}

// BenchmarkReconnectStorm: 300 devices from one address reconnect at once
// to an instance that has not admitted them yet (cold: after a restart,
// or in cluster mode before issue 15's shared admissions, the instance
// that did not answer their last CONNECT). Reported: seconds until all
// are admitted (s/storm). Run with -benchtime=1x.
func BenchmarkReconnectStorm(b *testing.B) {
	l, secret := stormLedger(b, stormDevices)
	for i := 0; i < b.N; i++ {
		a, err := NewAuth(AuthConfig{Ledger: l, Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(storm(b, a, stormDevices, secret, uint64(i)).Seconds(), "s/storm")
	}
}
