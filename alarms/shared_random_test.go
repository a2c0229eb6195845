package alarms

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// testSharedRandomized: three instance slots on one PostgreSQL; a
// seeded sequence of raises and clears on random instances, instances
// dying (connections closed, no clean release) and new ones starting, and
// a receiver that fails now and then. Afterwards every push is delivered;
// each alarm's pushes first arrived in the order they were queued; a push
// arrived successfully twice only when an instance died around its first
// arrival and the second came after the dead instance's lease lapsed.
// FW_SHARED_SEED replays a seed.
func testSharedRandomized(t *testing.T, p *testenv.Postgres) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FW_SHARED_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	defer func() {
		if t.Failed() {
			t.Logf("seed %d (FW_SHARED_SEED=%d to replay)", seed, seed)
		}
	}()
	rng := rand.New(rand.NewPCG(seed, 15))
	db := p.NewDatabase(t)

	var (
		mu      sync.Mutex
		ok      []string    // keys answered 2xx, in order
		okAt    []time.Time // when
		deaths  []time.Time
		failFor int // answer 503 to this many more requests
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var push Push
		json.Unmarshal(body, &push)
		mu.Lock()
		defer mu.Unlock()
		if failFor > 0 {
			failFor--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ok = append(ok, push.IdempotencyKey)
		okAt = append(okAt, time.Now())
	}))
	defer srv.Close()
	l := testLedger(t, srv.URL, srv.URL+"/other")
	r := newTestRules(t)
	cfg := sharedConfig(db)
	cfg.PushTimeout, cfg.Lease = 500*time.Millisecond, time.Second

	var slots [3]*running
	newInstance := func() *running {
		m, err := NewManager(cfg, l)
		if err != nil {
			t.Fatal(err)
		}
		m.grace = 0
		return runManager(t, m)
	}
	for i := range slots {
		slots[i] = newInstance()
	}
	live := func() []int {
		var out []int
		for i, s := range slots {
			if s != nil {
				out = append(out, i)
			}
		}
		return out
	}
	open := map[uint8]bool{}
	for step := range 60 {
		ls := live()
		switch a := rng.IntN(10); {
		case a < 6: // raise or clear on a random channel, on a random instance
			ch := uint8(rng.IntN(12))
			m := slots[ls[rng.IntN(len(ls))]]
			if open[ch] {
				m.Submit(clearEv(r.residual, devElectrical, ch, 200))
			} else {
				m.Submit(raise(r.residual, devElectrical, ch, 356, 12_000))
			}
			open[ch] = !open[ch]
			m.Sync()
		case a < 7 && len(ls) > 1: // an instance dies
			i := ls[rng.IntN(len(ls))]
			mu.Lock()
			deaths = append(deaths, time.Now())
			mu.Unlock()
			slots[i].store.w.Close()
			slots[i].stop()
			slots[i] = nil
		case a < 8: // a new instance in an empty slot
			for i := range slots {
				if slots[i] == nil {
					slots[i] = newInstance()
					break
				}
			}
		case a < 9: // the receiver fails for a while
			mu.Lock()
			failFor = 1 + rng.IntN(4)
			mu.Unlock()
		default: // let deliveries run
			n := 0
			testenv.WaitFor(t, wait, "a delivery or two", func() bool {
				n++
				mu.Lock()
				defer mu.Unlock()
				return n > 3 || len(ok) > step/4
			})
		}
	}
	m := slots[live()[0]]
	var keys []string
	byAlarm := map[int64][]string{}
	testenv.WaitFor(t, 30*time.Second, "every push delivered", func() bool {
		var left int
		if err := m.store.r.QueryRow(`SELECT COUNT(*) - COUNT(delivered_at_ms) FROM outbox`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
	rows, err := m.store.r.Query(`SELECT alarm_id, idempotency_key FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var alarm int64
		var key string
		if err := rows.Scan(&alarm, &key); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
		byAlarm[alarm] = append(byAlarm[alarm], key)
	}
	rows.Close()
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]int{}
	firstAt := map[string]time.Time{}
	var first []string
	twice := 0
	for i, k := range ok {
		if seen[k] == 0 {
			first = append(first, k)
			firstAt[k] = okAt[i]
		} else {
			twice++
			t1, t2 := firstAt[k], okAt[i]
			legit := t2.Sub(t1) >= cfg.Lease/4 && slices.ContainsFunc(deaths, func(d time.Time) bool {
				return !d.Before(t1.Add(-cfg.PushTimeout)) && !d.After(t2)
			})
			if !legit {
				t.Errorf("push %s arrived again %s after its first arrival, no instance having died in between after it was sent",
					k, t2.Sub(t1).Round(time.Millisecond))
			}
		}
		seen[k]++
	}
	for _, k := range keys {
		if seen[k] == 0 {
			t.Errorf("push %s marked delivered but never answered 2xx", k)
		}
	}
	if twice > len(deaths) {
		t.Errorf("%d pushes arrived again with %d instances dying: at most one per death", twice, len(deaths))
	}
	for alarm, ks := range byAlarm {
		var got []string
		for _, k := range first {
			if slices.Contains(ks, k) {
				got = append(got, k)
			}
		}
		if !slices.Equal(got, ks) {
			t.Errorf("alarm %d: pushes first arrived as %v, queued as %v", alarm, got, ks)
		}
	}
	t.Logf("seed %d: %d pushes, %d instances died, %d pushes arrived again", seed, len(keys), len(deaths), twice)
}
