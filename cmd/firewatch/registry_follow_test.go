package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Issue 15: two instances share one PostgreSQL (alarms and registry). A
// device added through instance A's registry API connects to instance B
// with the secret A generated, and its smoke alarm raised through B reaches
// the station; removed through A, it is refused by B and its connection
// there closed. Before, B kept the registry it started with: it refused
// the new device (an alarm missed) and kept admitting the removed one.
func TestRegistryFollowTwoInstances(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	pg := testenv.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	rcv := newReceiver(t)
	ledger := writeLedger(t, rcv.URL)
	dir := t.TempDir()
	instance := func(name string) (*service, string) {
		cfg := defaults()
		cfg.Ledger = ledger
		cfg.MQTT.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		cfg.HTTP.Listen = "127.0.0.1:0"
		cfg.HTTP.Tokens = "wang-wu:admin:admin-secret-0123456789"
		cfg.Influx.URL, cfg.Influx.Bucket = db.URL, db.Bucket
		cfg.Influx.FlushInterval = 100 * time.Millisecond
		cfg.Influx.SpoolDir = filepath.Join(dir, name+"-spool")
		cfg.State.File = filepath.Join(dir, name+".state")
		cfg.Durability.WALDir = filepath.Join(dir, name+"-wal")
		cfg.Alarms.DB = dsn
		cfg.Alarms.Secret = e2eSecret
		cfg.Alarms.RetryMin = 50 * time.Millisecond
		cfg.Registry.FollowInterval = 100 * time.Millisecond
		s, _ := runService(t, &cfg, slog.LevelWarn)
		return s, "tcp://" + cfg.MQTT.Listen
	}
	a, _ := instance("a")
	_, brokerB := instance("b")

	const dev = `{"id":"sm-new","kind":"smoke","grid":"450204002003","address":"鹅山路30号","unit":"鹅山村委会","generate_secret":true}`
	code, got := registryCall(t, a, "POST", "/api/v1/registry/devices", "admin-secret-0123456789", dev)
	secret, _ := got["secret"].(string)
	if code != http.StatusCreated || secret == "" {
		t.Fatalf("POST on A: %d %v", code, got)
	}
	added := time.Now()

	connect := func() (paho.Client, error) {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(brokerB).SetClientID("sm-new").
			SetUsername("sm-new").SetPassword(secret).SetConnectRetry(false).SetAutoReconnect(false))
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return nil, fmt.Errorf("connect: timed out")
		}
		if tok.Error() != nil {
			return nil, tok.Error()
		}
		return c, nil
	}
	var c paho.Client
	testenv.WaitFor(t, 10*time.Second, "B to admit the device added on A", func() bool {
		var err error
		c, err = connect()
		return err == nil
	})
	t.Logf("B admitted the device added on A %v after the POST", time.Since(added).Round(time.Millisecond))
	defer c.Disconnect(100)
	msg := fmt.Sprintf(`{"ts":%d,"seq":1,"event":"smoke_alarm"}`, time.Now().UnixMilli())
	if tok := c.Publish("fw/v1/up/sm-new/event", 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish to B: %v", tok.Error())
	}
	testenv.WaitFor(t, 15*time.Second, "the push of sm-new's smoke alarm raised through B", func() bool {
		for _, p := range rcv.all() {
			if strings.Contains(fmt.Sprint(p.body), "sm-new") && p.sig == nil {
				return true
			}
		}
		return false
	})

	// Removed through A: B closes the connection it holds and refuses the
	// next one.
	if code, got := registryCall(t, a, "DELETE", "/api/v1/registry/devices/sm-new", "admin-secret-0123456789", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE on A: %d %v", code, got)
	}
	testenv.WaitFor(t, 10*time.Second, "B to close the removed device's connection", func() bool { return !c.IsConnectionOpen() })
	if c2, err := connect(); err == nil {
		c2.Disconnect(0)
		t.Fatal("B admitted the device removed on A")
	}
}

// Issue 15 in cluster mode: instance B owns the only partition, instance A
// serves the admin API. A smoke detector added through A's API (with a
// generated secret) connects to a NATS node — the auth callout is answered
// by either instance — and its smoke alarm, handled by B, reaches the
// station. Before, B kept its start-up registry: it refused the CONNECT
// when it answered the callout, and rejected the detector's messages as
// unknown — the alarm was missed.
func TestClusterRegistryFollow(t *testing.T) {
	rc := newRegistryCluster(t)
	instance := func(name string) *service {
		return rc.instance(name, func(cfg *Config) { cfg.Registry.FollowInterval = 100 * time.Millisecond })
	}
	// B first: it pulls the partition first and keeps it (its share of one
	// partition between two instances is one).
	b := instance("b")
	a := instance("a")

	const dev = `{"id":"sm-new","kind":"smoke","grid":"450204002003","address":"鹅山路30号","unit":"鹅山村委会","generate_secret":true}`
	code, got := registryCall(t, a, "POST", "/api/v1/registry/devices", "admin-secret-0123456789", dev)
	secret, _ := got["secret"].(string)
	if code != http.StatusCreated || secret == "" {
		t.Fatalf("POST on A: %d %v", code, got)
	}
	c := rc.admitted("sm-new", secret, 15*time.Second)
	rc.smokeAlarm(c, "sm-new")
	owner := "neither"
	for name, s := range map[string]*service{"a": a, "b": b} {
		if src, ok := s.source.(*cluster.Source); ok && len(src.Owned()) == 1 {
			owner = name
		}
	}
	t.Logf("the partition's owner: %s", owner)
	if owner != "b" {
		t.Logf("B did not keep the partition: the test showed A's own adoption only")
	}
}

// registryCluster is the set-up of the cluster-mode registry tests: a
// 3-node NATS cluster with the auth callout and one partition, a
// PostgreSQL store, the dispatch receiver and the ledger; instance starts
// a firewatch instance on them.
type registryCluster struct {
	t                *testing.T
	nc               *testenv.NATSCluster
	rcv              *receiver
	ledger, dsn, dir string
}

func newRegistryCluster(t *testing.T) *registryCluster {
	nc := testenv.StartNATSCluster(t, cluster.ServerMappings(1), testenv.WithAuthCallout())
	pg := testenv.StartPostgres(t)
	rcv := newReceiver(t)
	return &registryCluster{t: t, nc: nc, rcv: rcv, ledger: writeLedger(t, rcv.URL), dsn: pg.NewDatabase(t), dir: t.TempDir()}
}

// instance runs firewatch instance name in cluster mode, its admin API
// under the token admin-secret-0123456789; tune sets what the test needs.
func (rc *registryCluster) instance(name string, tune func(*Config)) *service {
	var mqttURLs []string
	for _, n := range rc.nc.Nodes {
		mqttURLs = append(mqttURLs, n.MQTT)
	}
	cfg := defaults()
	cfg.Ledger = rc.ledger
	cfg.Cluster.Enabled, cfg.Cluster.URLs, cfg.Cluster.Partitions, cfg.Cluster.Instance = true, rc.nc.URLs(), 1, name
	cfg.Cluster.User, cfg.Cluster.Password = rc.nc.Callout.User, rc.nc.Callout.Password
	cfg.Cluster.CalloutSeed, cfg.Cluster.CalloutAccount = rc.nc.Callout.SeedFile, rc.nc.Callout.Account
	cfg.Cluster.MQTT = strings.Join(mqttURLs, ",")
	cfg.Cluster.MaxMB = 256
	cfg.Influx.URL = "http://127.0.0.1:1" // readings are not looked at here
	cfg.Influx.ShutdownTimeout = 100 * time.Millisecond
	cfg.Influx.SpoolDir = filepath.Join(rc.dir, name+"-spool")
	cfg.State.File = filepath.Join(rc.dir, name+".state")
	cfg.Durability.WALDir = filepath.Join(rc.dir, name+"-wal")
	cfg.Alarms.DB = rc.dsn
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.RetryMin = 50 * time.Millisecond
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Tokens = "wang-wu:admin:admin-secret-0123456789"
	tune(&cfg)
	s, _ := runService(rc.t, &cfg, slog.LevelWarn)
	return s
}

// connect connects device id with its secret to the second NATS node's
// MQTT listener; ok is false if the node refused it.
func (rc *registryCluster) connect(id, secret string) (c paho.Client, ok bool) {
	c = paho.NewClient(paho.NewClientOptions().AddBroker(rc.nc.Nodes[1].MQTT).SetClientID(id).
		SetUsername(id).SetPassword(secret).SetAutoReconnect(false))
	tok := c.Connect()
	return c, tok.WaitTimeout(10*time.Second) && tok.Error() == nil
}

// admitted connects device id, trying again until the cluster admits it
// (within).
func (rc *registryCluster) admitted(id, secret string, within time.Duration) paho.Client {
	var c paho.Client
	testenv.WaitFor(rc.t, within, id+" admitted by the cluster", func() bool {
		var ok bool
		c, ok = rc.connect(id, secret)
		return ok
	})
	rc.t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// smokeAlarm publishes a smoke alarm of device id on c and waits for its
// push at the receiver.
func (rc *registryCluster) smokeAlarm(c paho.Client, id string) {
	msg := fmt.Sprintf(`{"ts":%d,"seq":1,"event":"smoke_alarm"}`, time.Now().UnixMilli())
	if tok := c.Publish("fw/v1/up/"+id+"/event", 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		rc.t.Fatalf("publish %s: %v", id, tok.Error())
	}
	testenv.WaitFor(rc.t, 30*time.Second, "the push of "+id+"'s smoke alarm", func() bool {
		for _, p := range rc.rcv.all() {
			if strings.Contains(fmt.Sprint(p.body), id) && p.sig == nil {
				return true
			}
		}
		return false
	})
}
