package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestClusterFailover is issue 15's failover under load with real
// processes: a 3-node NATS cluster (JetStream, MQTT), InfluxDB, one
// PostgreSQL alarm store, two firewatch instances in cluster mode and
// gateways publishing 2,000 readings/s over MQTT to all three nodes (QoS 1,
// PUBACKs recorded). The instance that owns the partition of a smoke
// detector is killed with SIGKILL and the detector reports a fire at once;
// then one NATS node is killed. Afterwards every reading a gateway had
// acknowledged is in InfluxDB, the fire's alarm reached the station and
// the brigade under one idempotency key each, and the takeover time is
// logged.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds firewatch, runs 3 NATS nodes, InfluxDB, PostgreSQL and two instances under load")
	}
	const (
		parts      = 16
		gateways   = 20
		perGateway = 10
		every      = 100 * time.Millisecond // 20 × 10 readings every 100 ms: 2,000 readings/s
		fireDev    = "sm-fire"
	)
	// With the auth callout (docs/cluster.md "Credentials"): each gateway
	// and the detector connect with their own secrets, which the instances
	// check, the survivor alone after the first kill.
	nc := testenv.StartNATSCluster(t, cluster.ServerMappings(parts), testenv.WithAuthCallout())
	db := testenv.StartInfluxDB(t)
	pg := testenv.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	bin := buildFirewatch(t)
	rcv := newCrashReceiver(t)

	dir := t.TempDir()
	var l strings.Builder
	secretHash := func(secret string) string {
		h, err := broker.HashSecret([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	fmt.Fprintf(&l, "gateways:\n")
	for g := range gateways {
		fmt.Fprintf(&l, "  - id: gw-%02d\n    secret_hash: %q\n", g, secretHash(fmt.Sprintf("secret-gw-%02d", g)))
	}
	fmt.Fprintf(&l, "places:\n  \"450204\": 柳州市柳南区\n  \"450204002\": 潭西街道\nstations:\n"+
		"  - id: st-f\n    name: 潭西街道微型消防站\n    grids: [\"450204002\"]\n    endpoint: %s/st-f\ndevices:\n", rcv.url())
	for g := range gateways {
		for d := range perGateway {
			fmt.Fprintf(&l, "  - id: hy-%02d-%02d\n    gateway: gw-%02d\n    kind: hydrant\n    model: PT-100\n    grid: \"450204002001\"\n    address: 鹅山路%d号\n",
				g, d, g, g*perGateway+d)
		}
	}
	fmt.Fprintf(&l, "  - id: %s\n    kind: smoke\n    model: JTY-GD-NB\n    grid: \"450204002001\"\n    address: 鹅山小区1栋\n    secret_hash: %q\n", fireDev, secretHash("secret-"+fireDev))
	ledger := filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(ledger, []byte(l.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// A message is acknowledged to the stream once its readings are in
	// InfluxDB (or the spool): a write-ahead log on the dead instance's disk
	// would not help the survivor (durability.mode written, docs/cluster.md).
	durability := []string{"-durability.mode", "written"}
	instance := func(name string) *fwProcess {
		httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		return &fwProcess{t: t, bin: bin, api: "http://" + httpAddr, args: append(durability,
			"-ledger", ledger,
			"-cluster.enabled", "-cluster.urls", nc.URLs(), "-cluster.instance", name,
			"-cluster.partitions", strconv.Itoa(parts), "-cluster.max_mb", "512",
			"-cluster.user", nc.Callout.User, "-cluster.password", nc.Callout.Password,
			"-cluster.callout_seed", nc.Callout.SeedFile, "-cluster.callout_account", nc.Callout.Account,
			"-influx.url", db.URL, "-influx.bucket", db.Bucket, "-influx.flush_interval", "100ms",
			"-influx.spool_dir", filepath.Join(dir, name+"-spool"),
			"-state.file", filepath.Join(dir, name+".state"),
			"-alarms.db", dsn, "-alarms.secret", e2eSecret,
			"-alarms.brigade_endpoint", rcv.url()+"/119",
			"-alarms.retry_min", "50ms", "-alarms.retry_max", "200ms",
			"-http.listen", httpAddr, "-log.level", "info",
		)}
	}
	fwA, fwB := instance("a"), instance("b")
	t.Cleanup(fwA.kill)
	t.Cleanup(fwB.kill)
	fwA.start()
	fwB.start()

	// One MQTT connection per gateway, with its own secret; gateway g
	// connects to node g%3. A gateway whose connection drops (its node
	// killed, or the node closing MQTT connections while its streams elect
	// leaders) reconnects to any node, as firegate does; what was in flight
	// then counts as not acknowledged.
	dial := func(i int, user string) paho.Client {
		n := nc.Nodes[i%3]
		o := paho.NewClientOptions().AddBroker(n.MQTT).SetClientID(user).
			SetUsername(user).SetPassword("secret-" + user).
			SetCleanSession(true).SetOrderMatters(false).
			SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond)
		for _, other := range nc.Nodes {
			if other != n {
				o.AddBroker(other.MQTT)
			}
		}
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect to %s: %v", user, n.MQTT, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c
	}
	pubs := make([]paho.Client, gateways)
	for g := range pubs {
		pubs[g] = dial(g, fmt.Sprintf("gw-%02d", g))
	}
	type reading struct {
		dev string
		ts  int64
	}
	var (
		mu      sync.Mutex
		acked   = map[reading]bool{}
		sent    int
		failed  int
		perPub  [3]int // readings acknowledged per node first connected to
		stop    = make(chan struct{})
		loadEnd sync.WaitGroup
	)
	for p := range pubs {
		loadEnd.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			var last int64
			var waits sync.WaitGroup
			defer waits.Wait()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if !pubs[p].IsConnectionOpen() {
					continue // reconnecting
				}
				ts := max(time.Now().UnixMilli(), last+1) // a millisecond per batch: InfluxDB keeps one point per series and time
				last = ts
				{
					g := p
					var b strings.Builder
					b.WriteString(`{"readings":[`)
					batch := make([]reading, perGateway)
					for d := range perGateway {
						if d > 0 {
							b.WriteByte(',')
						}
						dev := fmt.Sprintf("hy-%02d-%02d", g, d)
						batch[d] = reading{dev, ts}
						fmt.Fprintf(&b, `{"dev":%q,"ts":%d,"m":{"pressure_mpa":0.3%d}}`, dev, ts, d)
					}
					b.WriteString(`]}`)
					tok := pubs[p].Publish(fmt.Sprintf("fw/v1/up/gw/gw-%02d/batch", g), 1, false, b.String())
					mu.Lock()
					sent += perGateway
					mu.Unlock()
					waits.Go(func() {
						ok := tok.WaitTimeout(20*time.Second) && tok.Error() == nil
						mu.Lock()
						defer mu.Unlock()
						if !ok {
							failed += perGateway
							return
						}
						for _, r := range batch {
							acked[r] = true
						}
						perPub[p%3] += len(batch)
					})
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); loadEnd.Wait() })
	t.Cleanup(stopLoad)

	// The fire detector's heartbeat makes an instance take its partition.
	firePart := cluster.PartitionOf(fireDev, parts)
	owned := fmt.Sprintf(`firewatch_cluster_partition_owned{partition="%d"}`, firePart)
	acquired := fmt.Sprintf(`firewatch_cluster_partition_acquired_unixms{partition="%d"}`, firePart)
	detector := dial(1, fireDev)
	publish := func(topic, payload string) {
		tok := detector.Publish(topic, 1, false, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	publish("fw/v1/up/"+fireDev+"/status", fmt.Sprintf(`{"ts":%d,"m":{"battery_pct":90}}`, time.Now().UnixMilli()))
	var owner, survivor *fwProcess
	testenv.WaitFor(t, 30*time.Second, "an instance owning the fire detector's partition", func() bool {
		switch {
		case scrape(t, fwA.api+"/metrics")[owned] == 1:
			owner, survivor = fwA, fwB
		case scrape(t, fwB.api+"/metrics")[owned] == 1:
			owner, survivor = fwB, fwA
		}
		return owner != nil
	})
	time.Sleep(2 * time.Second) // load running through both instances: the test's scenario, not synchronisation

	// 1. SIGKILL the owner; the detector reports a fire at once.
	owner.kill()
	killed := time.Now()
	// It connects anew: the survivor alone answers the node's
	// authorization request.
	detector.Disconnect(0)
	detector = dial(2, fireDev)
	publish("fw/v1/up/"+fireDev+"/event", fmt.Sprintf(`{"ts":%d,"seq":1,"event":"smoke_alarm"}`, time.Now().UnixMilli()))
	fired := time.Now()
	var pushedAt time.Time
	testenv.WaitFor(t, 30*time.Second, "the fire's pushes to the station and the brigade", func() bool {
		if rcv.pathCount("/st-f") > 0 && rcv.pathCount("/119") > 0 {
			pushedAt = time.Now()
			return true
		}
		return false
	})
	m := scrape(t, survivor.api+"/metrics")
	takeover := time.UnixMilli(int64(m[acquired])).Sub(killed)
	t.Logf("takeover: the survivor took the fire's partition %v after the owner's SIGKILL (under load the dead owner was handling messages until then); the fire was pushed %v after its PUBACK",
		takeover.Round(time.Millisecond), pushedAt.Sub(fired).Round(time.Millisecond))
	if m[owned] != 1 {
		t.Errorf("the survivor does not own partition %d", firePart)
	}
	if takeover > 5*time.Second {
		t.Errorf("takeover took %v, goal ≤ 5 s", takeover)
	}

	// 2. SIGKILL a NATS node under load; the survivor and the publishers go on.
	time.Sleep(time.Second) // load before the second failure: the scenario, not synchronisation
	nc.Kill(2)
	natsKilled := time.Now()
	time.Sleep(4 * time.Second) // load on two nodes: the scenario, not synchronisation
	stopLoad()

	mu.Lock()
	want := len(acked)
	t.Logf("%d readings published, %d acknowledged (PUBACK; per publisher %v), %d not (in flight when a connection dropped)", sent, want, perPub, failed)
	mu.Unlock()
	// Every acknowledged reading must be in InfluxDB: the killed owner
	// acknowledged to the stream only what was written there or spooled.
	var missing []reading
	deadline := time.Now().Add(60 * time.Second)
	for !func() bool {
		stored := map[reading]bool{}
		for _, row := range db.Flux(t, `from(bucket: "`+db.Bucket+`") |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "hydrant" and r._field == "pressure_mpa")
  |> keep(columns: ["_time", "device"])`) {
			tm, err := time.Parse(time.RFC3339Nano, row["_time"])
			if err == nil {
				stored[reading{row["device"], tm.UnixMilli()}] = true
			}
		}
		mu.Lock()
		defer mu.Unlock()
		missing = missing[:0]
		for r := range acked {
			if !stored[r] {
				missing = append(missing, r)
			}
		}
		return len(missing) == 0
	}() {
		if time.Now().After(deadline) {
			slices.SortFunc(missing, func(a, b reading) int { return cmp.Compare(a.ts, b.ts) })
			t.Fatalf("%d of %d acknowledged readings are not in InfluxDB after 60 s; the first %v, the last %v (the owner was killed at %d, the NATS node at %d)",
				len(missing), want, missing[0], missing[len(missing)-1], killed.UnixMilli(), natsKilled.UnixMilli())
		}
		time.Sleep(time.Second) // polling InfluxDB, which has no signal to wait on
	}
	t.Logf("every one of %d acknowledged readings is in InfluxDB", want)

	// One alarm for the fire, pushed under one key per endpoint (a repeat
	// of the same key and body is at-least-once delivery).
	keys := rcv.keys()
	if len(keys["/st-f"]) != 1 || len(keys["/119"]) != 1 {
		t.Errorf("pushes by path and key: %v; want one key each for /st-f and /119", keys)
	}
	for path, ks := range keys {
		for k := range ks {
			if path == "/119" && !strings.Contains(strings.Join(mapKeys(keys["/st-f"]), " "), strings.TrimSuffix(k, "-raised")) {
				t.Errorf("the brigade's key %s names another alarm than the station's %v", k, keys["/st-f"])
			}
		}
	}
}

// pathCount is how many pushes arrived under paths starting with prefix.
func (r *crashReceiver) pathCount(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, b := range r.bodies {
		if strings.HasPrefix(k, prefix) {
			n += len(b)
		}
	}
	return n
}

// keys returns, per path, the idempotency keys received.
func (r *crashReceiver) keys() map[string]map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]bool{}
	for k := range r.bodies {
		path, key, _ := strings.Cut(k, " ")
		if out[path] == nil {
			out[path] = map[string]bool{}
		}
		out[path][key] = true
	}
	return out
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
