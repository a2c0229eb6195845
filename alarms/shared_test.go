package alarms

// Several instances on one PostgreSQL store (issue 15, shared.go): pushes
// delivered once per idempotency key and in order while an instance is
// killed mid-delivery, the periodic duties on one instance at a time,
// alarms raised while PostgreSQL restarts. Each subtest failed on the code
// before the leases.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/rules"
)

func TestSharedStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	p := testenv.StartPostgres(t)
	t.Run("Migrate", func(t *testing.T) { testSharedMigrate(t, p) })
	t.Run("OutboxKill", func(t *testing.T) { testSharedOutboxKill(t, p) })
	t.Run("DutySingleton", func(t *testing.T) { testSharedDuty(t, p) })
	t.Run("Commands", func(t *testing.T) { testSharedCommands(t, p) })
	t.Run("Digests", func(t *testing.T) { testSharedDigests(t, p) })
	t.Run("GetOneSnapshot", func(t *testing.T) { testGetOneSnapshot(t, p.NewDatabase(t)) })               // get_snapshot_test.go
	t.Run("DeliveredWhileCleared", func(t *testing.T) { testDeliveredWhileCleared(t, p.NewDatabase(t)) }) // delivered_race_test.go
	t.Run("CommandAckWhileCleared", func(t *testing.T) { testCommandAckWhileCleared(t, p.NewDatabase(t)) })
	t.Run("RegistryRemoved", func(t *testing.T) { testSharedRegistryRemoved(t, p) })
	t.Run("Randomized", func(t *testing.T) { testSharedRandomized(t, p) })   // shared_random_test.go
	t.Run("PostgresRestart", func(t *testing.T) { testSharedRestart(t, p) }) // last: stops the cluster
}

// testSharedMigrate: instances started together on an empty database all
// open it (the migrations run one after the other).
func testSharedMigrate(t *testing.T, p *testenv.Postgres) {
	for round := range 2 {
		url := p.NewDatabase(t)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				s, err := openStore(url)
				if err == nil {
					s.close()
				}
				errs <- err
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: instances starting together: %v", round, err)
			}
		}
	}
}

// shareReceiver is a dispatch webhook that records every push's key in
// order of arrival and can hold one request until released.
type shareReceiver struct {
	srv *httptest.Server

	mu    sync.Mutex
	keys  []string       // in order of arrival
	times []time.Time    // arrival of keys[i]
	seen  map[string]int // key → requests
	// holdAt is the request (1-based) held until release is closed;
	// held is closed when it arrives.
	holdAt        int
	held, release chan struct{}
}

func newShareReceiver(t *testing.T, holdAt int) *shareReceiver {
	rc := &shareReceiver{seen: map[string]int{}, holdAt: holdAt, held: make(chan struct{}), release: make(chan struct{})}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var push Push
		if err := json.Unmarshal(body, &push); err != nil || push.IdempotencyKey != r.Header.Get(HeaderIdempotencyKey) {
			t.Errorf("receiver: push %q with key header %q: %v", body, r.Header.Get(HeaderIdempotencyKey), err)
		}
		rc.mu.Lock()
		rc.keys = append(rc.keys, push.IdempotencyKey)
		rc.times = append(rc.times, time.Now())
		rc.seen[push.IdempotencyKey]++
		n := len(rc.keys)
		rc.mu.Unlock()
		if n == rc.holdAt {
			close(rc.held)
			<-rc.release
		}
	}))
	t.Cleanup(func() {
		select {
		case <-rc.release:
		default:
			close(rc.release)
		}
		rc.srv.Close()
	})
	return rc
}

// sharedChildEnv, when set, makes TestSharedChild an instance for
// testSharedOutboxKill: "<db>|<receiver>|<alarms>".
const sharedChildEnv = "FW_ALARMS_SHARED_CHILD"

// TestSharedChild is the instance testSharedOutboxKill kills with SIGKILL:
// it raises alarms on channels 0..n-1, prints "stored" once they are
// committed, and delivers until it is killed.
func TestSharedChild(t *testing.T) {
	spec := os.Getenv(sharedChildEnv)
	if spec == "" {
		t.Skip("run by testSharedOutboxKill")
	}
	parts := strings.Split(spec, "|")
	n, _ := strconv.Atoi(parts[2])
	cfg := sharedConfig(parts[0])
	m, err := NewManager(cfg, testLedger(t, parts[1], parts[1]+"/other"))
	if err != nil {
		t.Fatal(err)
	}
	go m.Run(context.Background())
	r := newTestRules(t)
	for ch := range n {
		m.Submit(raise(r.residual, devElectrical, uint8(ch), 356, 12_000))
	}
	m.Sync()
	fmt.Println("stored")
	select {} // until killed
}

// sharedConfig is the configuration of the instances of these tests: a
// lease of 3 s over a push timeout of 2 s.
func sharedConfig(db string) Config {
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("FW_SHARED_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return Config{DBPath: db, Secret: testSecret, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		PushTimeout: 2 * time.Second, Lease: 3 * time.Second, Logger: log, StormWindow: -1, Digest: DigestOff}
}

// testSharedOutboxKill: an instance raises a burst of alarms and is killed
// with SIGKILL while a push is on its way; two other instances raise alarms
// of their own meanwhile. Every push reaches the receiver, in the order of
// the outbox, each under its one key and only the one cut off twice; no
// push is left undelivered; the takeover of the dead instance's push is
// timed.
func testSharedOutboxKill(t *testing.T, p *testenv.Postgres) {
	const childAlarms, ownAlarms = 40, 20
	db := p.NewDatabase(t)
	rc := newShareReceiver(t, 5)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), sharedChildEnv+"="+db+"|"+rc.srv.URL+"|"+strconv.Itoa(childAlarms))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	stored := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "stored" {
				close(stored)
			}
		}
	}()
	for _, c := range []chan struct{}{stored, rc.held} {
		select {
		case <-c:
		case <-time.After(wait):
			t.Fatal("the child instance did not store its alarms and start delivering")
		}
	}
	cmd.Process.Kill() // SIGKILL, mid-delivery of the fifth push
	cmd.Wait()
	killed = true
	dead := time.Now()
	close(rc.release)

	r := newTestRules(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	var ms []*running
	for i := range 2 {
		m := start(t, sharedConfig(db), l)
		ms = append(ms, m)
		go func() {
			for ch := range ownAlarms {
				m.Submit(raise(r.cableTemp, devElectrical, uint8(i*ownAlarms+ch), 80, 12_000))
			}
		}()
	}
	const total = childAlarms + 2*ownAlarms
	testenv.WaitFor(t, 30*time.Second, "every push delivered", func() bool {
		var left, all int
		if err := ms[0].store.r.QueryRow(`SELECT COUNT(*), COUNT(*) - COUNT(delivered_at_ms) FROM outbox`).Scan(&all, &left); err != nil {
			t.Fatal(err)
		}
		return all == total && left == 0
	})
	rows, err := ms[0].store.r.Query(`SELECT id, alarm_id, idempotency_key FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	byAlarm := map[int64][]string{}
	for rows.Next() {
		var id, alarm int64
		var key string
		if err := rows.Scan(&id, &alarm, &key); err != nil {
			t.Fatal(err)
		}
		order = append(order, key)
		byAlarm[alarm] = append(byAlarm[alarm], key)
	}
	rows.Close()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var first []string
	var takeover time.Duration
	for i, k := range rc.keys {
		if rc.seen[k] > 0 && !slices.Contains(first, k) {
			first = append(first, k)
		}
		if i == 5 {
			takeover = rc.times[i].Sub(dead)
		}
	}
	if !slices.Equal(first, order) {
		t.Errorf("pushes arrived in the order\n%v\nwant the outbox's\n%v", first, order)
	}
	for alarm, keys := range byAlarm {
		if len(keys) != 1 {
			t.Errorf("alarm %d pushed under keys %v", alarm, keys)
		}
	}
	twice := 0
	for k, n := range rc.seen {
		if n > 1 {
			twice++
			if k != rc.keys[4] || n != 2 {
				t.Errorf("push %s arrived %d times; only the one cut off (%s) may arrive again", k, n, rc.keys[4])
			}
		}
	}
	t.Logf("%d pushes, %d sent again after the kill; takeover of the dead instance's push %s (lease %s)",
		len(order), twice, takeover.Round(time.Millisecond), sharedConfig(db).Lease)
	if takeover > 2*sharedConfig(db).Lease {
		t.Errorf("takeover took %s, want at most the lease and a third (%s) and slack", takeover, sharedConfig(db).Lease*4/3)
	}
}

// testSharedDuty: of three instances, one runs the periodic checks; when it
// dies (its connections gone, no clean release), another takes over within
// the lease, and again only one runs them.
func testSharedDuty(t *testing.T, p *testenv.Postgres) {
	db := p.NewDatabase(t)
	rc := newShareReceiver(t, 0)
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	type sweep struct {
		who int
		at  time.Time
	}
	var (
		mu     sync.Mutex
		sweeps []sweep
	)
	var ms []*running
	for i := range 3 {
		cfg := sharedConfig(db)
		cfg.EscalationCheck = 20 * time.Millisecond
		m, err := NewManager(cfg, l)
		if err != nil {
			t.Fatal(err)
		}
		m.onDuty = func() {
			mu.Lock()
			sweeps = append(sweeps, sweep{i, time.Now()})
			mu.Unlock()
		}
		ms = append(ms, runManager(t, m))
	}
	// count returns how many sweeps each instance made after from.
	count := func(from time.Time) [3]int {
		mu.Lock()
		defer mu.Unlock()
		var n [3]int
		for _, s := range sweeps {
			if s.at.After(from) {
				n[s.who]++
			}
		}
		return n
	}
	leaders := func(n [3]int) (who []int) {
		for i, c := range n {
			if c > 0 {
				who = append(who, i)
			}
		}
		return who
	}
	from := time.Now()
	testenv.WaitFor(t, wait, "40 sweeps", func() bool { n := count(from); return n[0]+n[1]+n[2] >= 40 })
	n := count(from)
	who := leaders(n)
	if len(who) != 1 {
		t.Fatalf("sweeps by instance %v: want one instance only", n)
	}
	holder := who[0]
	// The holder dies: its connections close under it, and its Run ends
	// without a clean release.
	ms[holder].store.w.Close()
	ms[holder].stop()
	dead := time.Now()
	var took time.Duration
	testenv.WaitFor(t, wait, "another instance sweeps", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sweeps {
			if s.at.After(dead) && s.who != holder {
				took = s.at.Sub(dead)
				return true
			}
		}
		return false
	})
	lease := sharedConfig(db).Lease
	t.Logf("periodic duties taken over %s after the holder died (lease %s, renewed every %s)", took.Round(time.Millisecond), lease, lease/3)
	if took > lease*4/3+time.Second {
		t.Errorf("takeover took %s, want at most the lease and a third (%s)", took, lease*4/3)
	}
	after := time.Now()
	testenv.WaitFor(t, wait, "40 more sweeps", func() bool { n := count(after); return n[0]+n[1]+n[2] >= 40 })
	if who := leaders(count(after)); len(who) != 1 || who[0] == holder {
		t.Errorf("after the takeover, sweeps by instance %v: want one surviving instance only", count(after))
	}
}

// runManager runs m until the test ends, like start.
func runManager(t *testing.T, m *Manager) *running {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() error {
		once.Do(func() {
			cancel()
			<-done
			m.Close()
		})
		return nil
	}
	t.Cleanup(func() { stop() })
	return &running{Manager: m, stop: stop}
}

// testSharedCommands: instances that find the same linkage commands due
// at once send each attempt once between them.
func testSharedCommands(t *testing.T, p *testenv.Postgres) {
	const commands = 30
	db := p.NewDatabase(t)
	rc := newShareReceiver(t, 0)
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	r := newTestRules(t)
	var sent atomic.Int32
	var ms []*Manager
	for range 3 {
		cfg := sharedConfig(db)
		cfg.CommandRetry = 10 * time.Millisecond
		cfg.Publish = func(context.Context, string, []byte) error { sent.Add(1); return nil }
		m, err := NewManager(cfg, l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		ms = append(ms, m)
	}
	// Each slot temperature alarm queues a cut_power command.
	var evs []rules.Event
	for ch := range commands {
		evs = append(evs, raise(r.slotTemp, devCharger, uint8(ch), 70, 0))
	}
	if _, err := ms[0].apply(evs); err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	for round := range CommandAttempts + 1 {
		now := base.Add(time.Duration(round) * 10 * time.Millisecond)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() {
				<-start
				if err := m.sendCommands(context.Background(), now); err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if got := int(sent.Load()); got != commands*CommandAttempts {
		t.Errorf("%d publishes of %d commands attempted %d times each", got, commands, CommandAttempts)
	}
}

// testSharedDigests: instances whose digest checks all find the same
// digest due send it once between them.
func testSharedDigests(t *testing.T, p *testenv.Postgres) {
	db := p.NewDatabase(t)
	rc := newShareReceiver(t, 0)
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	town := newDigestRobot(t)
	robots, err := ParseRobots("450204001=wecom:" + town.url + "/send?key=k")
	if err != nil {
		t.Fatal(err)
	}
	var ticks atomic.Int32
	var ms []*Manager
	for range 3 {
		cfg := sharedConfig(db)
		cfg.Digest, cfg.DigestCheck, cfg.Robots = DigestDaily, 10*time.Millisecond, robots
		cfg.EscalationCheck = 10 * time.Millisecond
		m, err := NewManager(cfg, l)
		if err != nil {
			t.Fatal(err)
		}
		m.onDuty = func() { ticks.Add(1) }
		ms = append(ms, m)
	}
	for _, m := range ms { // together: their first checks at the same moment
		runManager(t, m)
	}
	testenv.WaitFor(t, wait, "the digest", func() bool { return len(town.digests()) > 0 })
	// Many more checks of every instance (the leader's ticks count them).
	from := ticks.Load()
	testenv.WaitFor(t, wait, "50 more checks", func() bool { return ticks.Load() >= from+50 })
	if n := len(town.digests()); n != 1 {
		t.Errorf("the digest was sent %d times by three instances, want once", n)
	}
}

// testSharedRestart: PostgreSQL stops and starts again under two instances
// while alarms are raised: Sync waits, none is lost, all are pushed.
func testSharedRestart(t *testing.T, p *testenv.Postgres) {
	db := p.NewDatabase(t)
	rc := newShareReceiver(t, 0)
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	r := newTestRules(t)
	var ms []*running
	for range 2 {
		cfg := sharedConfig(db)
		cfg.RetryMin, cfg.RetryMax = 0, 0 // the defaults, 500ms to 30s
		ms = append(ms, start(t, cfg, l))
	}
	ms[0].Submit(raise(r.residual, devElectrical, 200, 356, 12_000))
	ms[0].Sync()
	testenv.WaitFor(t, wait, "the first push", func() bool { rc.mu.Lock(); defer rc.mu.Unlock(); return len(rc.keys) == 1 })

	p.Stop()
	const each = 15
	synced := make(chan int, 2)
	for i, m := range ms {
		go func() {
			for ch := range each {
				m.Submit(raise(r.cableTemp, devElectrical, uint8(i*each+ch), 80, 12_000))
			}
			m.Sync()
			synced <- i
		}()
	}
	// While the database is down, Sync must not return: nothing is stored.
	// The outage lasts until each manager has failed several times.
	testenv.WaitFor(t, wait, "the managers fail to commit", func() bool {
		return ms[0].storeFailures.Load() >= 5 && ms[1].storeFailures.Load() >= 5
	})
	select {
	case i := <-synced:
		t.Fatalf("Sync of instance %d returned while PostgreSQL was down", i)
	default:
	}
	p.Start()
	back := time.Now() // accepting connections
	for range 2 {
		select {
		case <-synced:
		case <-time.After(wait):
			t.Fatal("Sync did not return after PostgreSQL came back")
		}
	}
	stored := time.Since(back)
	testenv.WaitFor(t, wait, "every push delivered", func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.seen) == 1+2*each
	})
	t.Logf("after PostgreSQL was started again: alarms stored in %s, pushed in %s", stored.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	if stored > storeRetryMax+2*time.Second {
		t.Errorf("alarms stored %s after PostgreSQL was back, want at most the store's retry bound (%s) and slack", stored, storeRetryMax)
	}
	if as := list(t, ms[0].Manager, Filter{}); len(as) != 1+2*each {
		var ids []string
		for _, a := range as {
			ids = append(ids, fmt.Sprintf("%s/%d/%s", a.ID, a.Channel, a.State))
		}
		rc.mu.Lock()
		t.Errorf("%d alarms stored, want %d: %v; pushes %v", len(as), 1+2*each, ids, rc.keys)
		rc.mu.Unlock()
	}
}

// testSharedRegistryRemoved: every instance follows the registry and acts
// on the same removal (cluster mode). A fire of the removed device, left
// open for a person, gets the removal noted once, not once per instance;
// the electrical alarm it auto-clears is closed once, without an error on
// the instances that lost the race. The instances act at once and then one
// after the other (an instance that follows the registry a poll later).
func testSharedRegistryRemoved(t *testing.T, p *testenv.Postgres) {
	db := p.NewDatabase(t)
	rc := newShareReceiver(t, 0)
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	r := newTestRules(t)
	var ms []*Manager
	for range 3 {
		m, err := NewManager(sharedConfig(db), l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		ms = append(ms, m)
	}
	if _, err := ms[0].apply([]rules.Event{raise(r.smoke, devSmoke, 0, 1, 0), raise(r.residual, devElectrical, 0, 350, 10_000)}); err != nil {
		t.Fatal(err)
	}
	smoke, electrical := l.Devices[devSmoke].ID, l.Devices[devElectrical].ID
	nl, d, err := l.Apply(&devices.Change{DeleteDevices: []string{smoke, electrical}})
	if err != nil {
		t.Fatal(err)
	}
	adopt := func(m *Manager) {
		if err := m.AdoptLedger(context.Background(), l, nl, d); err != nil {
			t.Errorf("an instance adopting the removal: %v", err)
		}
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() { adopt(m) })
	}
	wg.Wait()
	for _, m := range ms {
		adopt(m)
	}
	for _, dev := range []string{smoke, electrical} {
		as := list(t, ms[1], Filter{Device: dev})
		if len(as) != 1 {
			t.Fatalf("%d alarms of %s, want 1", len(as), dev)
		}
		a := get(t, ms[2], as[0].ID)
		var notes []string
		for _, h := range a.History {
			if h.Actor == ActorRegistry {
				notes = append(notes, string(h.To)+" "+h.Note)
			}
		}
		if len(notes) != 1 {
			t.Errorf("%s (%s): the registry's entries %q, want one", dev, a.State, notes)
		}
		if open := dev == smoke; a.Open != open {
			t.Errorf("%s: open %v, want %v", dev, a.Open, open)
		}
	}
}
