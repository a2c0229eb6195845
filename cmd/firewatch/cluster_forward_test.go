package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestClusterForwardIngest runs two firewatch instances in cluster mode on a
// real 3-node NATS cluster, each with the NB-IoT (CTWing) endpoint and the
// GB/T 26875.3 endpoint, each with an alarm store of its own (so that the
// store shows which instance evaluated a message). A CTWing push of a
// smoke alarm, written by hand, goes to the instance that does not own the
// detector's partition: it is answered 200 and the owner raises the alarm,
// the receiver does not. Likewise a UITD's fire alarm frame (the worked
// example of the standard) sent over TCP to the instance that does not own
// the point's partition: confirmed by the receiver, raised by the owner.
// With every NATS node down, a push is answered 503 (the platform retries)
// and a frame is not confirmed.
func TestClusterForwardIngest(t *testing.T) {
	const parts = 4
	nc := testenv.StartNATSCluster(t, cluster.ServerMappings(parts))
	rcv := newReceiver(t)

	// The GB/T 26875.3 test ledger (one UITD, its smoke detector fa-1-0105)
	// and a CTWing smoke detector.
	b, err := os.ReadFile("../../ingest/gb26875/server/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ledger := strings.ReplaceAll(string(b), "http://127.0.0.1:8090", rcv.URL)
	ledger = strings.Replace(ledger, "uitds:\n", `  - id: sm-nb-ct
    kind: smoke
    grid: "450204002003"
    address: 鹅山路20号
    nbiot: {imei: "869975031234568", product: NB-SMOKE-TM}
uitds:
`, 1)
	path := filepath.Join(t.TempDir(), "ledger.yaml")
	if err := os.WriteFile(path, []byte(ledger), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := startClusterPair(t, nc, parts, path, nil)
	fires := func(s *service, dev string) int { return cp.alarmsIn(s, dev, "fire") }

	// NB-IoT: the push to the instance that does not own the detector.
	owner, other := cp.roles("sm-nb-ct")
	if code, body := post(t, other.httpURL()+"/nbiot/ctwing/"+ctwingToken, ctwingSmoke); code != 200 {
		t.Fatalf("ctwing push: %d %s", code, body)
	}
	testenv.WaitFor(t, 30*time.Second, "the smoke alarm raised by the detector's owner", func() bool {
		return fires(owner, "sm-nb-ct") == 1
	})
	if n := fires(other, "sm-nb-ct"); n != 0 {
		t.Errorf("the instance that received the push, not the owner, raised %d alarms", n)
	}
	if n := metric(t, other, `firewatch_cluster_forwarded_total{origin="nbiot",result="ok"}`); n < 1 {
		t.Errorf("forwarded nbiot ok = %v", n)
	}

	// GB/T 26875.3: the UITD on the instance that does not own the point.
	owner, other = cp.roles("fa-1-0105")
	c, err := net.Dial("tcp", other.gb.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(uitdFrame(t, "testdata/frames/worked_example.hex")); err != nil {
		t.Fatal(err)
	}
	if serial, cmd := readCentreFrame(t, c); serial != 1 || cmd != 3 {
		t.Fatalf("answer: serial %d command %d, want the 确认 of serial 1", serial, cmd)
	}
	testenv.WaitFor(t, 30*time.Second, "the fire raised by the point's owner", func() bool {
		return fires(owner, "fa-1-0105") == 1
	})
	if n := fires(other, "fa-1-0105"); n != 0 {
		t.Errorf("the instance holding the UITD's connection, not the owner, raised %d fire alarms", n)
	}

	// No NATS node: the push is refused, the frame not confirmed.
	cp.stopTicks()
	for i := range nc.Nodes {
		nc.Kill(i)
	}
	// The controller's reset (serial 5) is not confirmed (sent first: its forward fails while the push's does).
	if _, err := c.Write(uitdFrame(t, "testdata/frames/type04_operation.hex")); err != nil {
		t.Fatal(err)
	}
	if code, _ := post(t, other.httpURL()+"/nbiot/ctwing/"+ctwingToken, strings.Replace(ctwingSmoke, `"upDataSN":17`, `"upDataSN":18`, 1)); code == 200 {
		t.Error("a push was answered 200 with every NATS node down")
	} else {
		t.Logf("with every NATS node down the push was answered %d", code)
	}
	testenv.WaitFor(t, 10*time.Second, "the reset's frame refused", func() bool {
		return metric(t, other, "firewatch_gb26875_commit_failed_total") >= 1
	})
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		h := make([]byte, 27)
		if _, err := io.ReadFull(c, h); err != nil {
			break // nothing more: not confirmed
		}
		rest := make([]byte, int(h[24])|int(h[25])<<8+3)
		if _, err := io.ReadFull(c, rest); err != nil {
			break
		}
		if h[26] == 3 && uint16(h[2])|uint16(h[3])<<8 == 5 {
			t.Fatal("the reset was confirmed with every NATS node down")
		}
	}
	cp.stop()
}

// clusterPair runs two firewatch instances, a and b, in cluster mode on nc
// with the ledger at path, each with an alarm store of its own (so that the
// store shows which instance evaluated a message), the NB-IoT (CTWing) and
// GB/T 26875.3 endpoints on, and every partition owned: a (not listed)
// device in each partition speaks every 50 ms until stopTicks. It returns
// once a and b own half of the partitions each.
type clusterPair struct {
	t         *testing.T
	parts     int
	a, b      *service
	srcA      *cluster.Source
	stopTicks func()
	stops     []func()
}

// stop stops both instances at once (each waits for its partitions'
// release, which takes seconds when NATS is down).
func (cp *clusterPair) stop() {
	var wg sync.WaitGroup
	for _, f := range cp.stops {
		wg.Go(f)
	}
	wg.Wait()
}

func startClusterPair(t *testing.T, nc *testenv.NATSCluster, parts int, path string, tune func(*Config)) *clusterPair {
	var stops []func()
	start := func(name string) *service {
		cfg := defaults()
		cfg.Ledger = path
		cfg.Cluster.Enabled, cfg.Cluster.URLs, cfg.Cluster.Partitions, cfg.Cluster.Instance = true, nc.URLs(), parts, name
		cfg.Cluster.MaxMB = 256
		cfg.Influx.URL = "http://127.0.0.1:1" // not needed here; writes queue and are dropped
		cfg.Influx.ShutdownTimeout = 100 * time.Millisecond
		cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
		cfg.Alarms.Secret = e2eSecret
		cfg.Alarms.StormWindow = 0
		cfg.HTTP.Listen = "127.0.0.1:0"
		cfg.NBIoT.CTWing.Token, cfg.NBIoT.CTWing.Tenants, cfg.NBIoT.CTWing.Products = ctwingToken, "2000033629", "15298770"
		cfg.GB26875.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		if tune != nil {
			tune(&cfg)
		}
		s, stop := runService(t, &cfg, slog.LevelWarn)
		stops = append(stops, stop)
		return s
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(nc.Nodes[0].MQTT).SetClientID("ticks").SetCleanSession(true))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	var ticks []string
	for i := 0; len(ticks) < parts; i++ {
		if id := fmt.Sprintf("tick-%d", i); cluster.PartitionOf(id, parts) == len(ticks) {
			ticks = append(ticks, "fw/v1/up/"+id+"/status")
		}
	}
	stop := make(chan struct{})
	var ticking sync.WaitGroup
	ticking.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, topic := range ticks {
				pub.Publish(topic, 1, false, `{}`).WaitTimeout(2 * time.Second)
			}
		}
	})
	var once sync.Once
	cp := &clusterPair{t: t, parts: parts, stopTicks: func() {
		once.Do(func() {
			close(stop)
			ticking.Wait()
			pub.Disconnect(100)
		})
	}}
	t.Cleanup(cp.stopTicks)
	cp.a = start("a")
	cp.srcA = cp.a.source.(*cluster.Source)
	testenv.WaitFor(t, 30*time.Second, "a owning every partition", func() bool { return len(cp.srcA.Owned()) == parts })
	cp.b = start("b")
	srcB := cp.b.source.(*cluster.Source)
	testenv.WaitFor(t, 30*time.Second, "the partitions shared", func() bool {
		return len(cp.srcA.Owned()) == parts/2 && len(srcB.Owned()) == parts/2
	})
	cp.stops = stops
	return cp
}

// roles returns the instance that owns dev's partition and the other.
func (cp *clusterPair) roles(dev string) (owner, other *service) {
	n := cluster.PartitionOf(dev, cp.parts)
	for _, p := range cp.srcA.Owned() {
		if p == n {
			return cp.a, cp.b
		}
	}
	return cp.b, cp.a
}

// alarmsIn returns how many alarms of dev with severity sev instance s stored.
func (cp *clusterPair) alarmsIn(s *service, dev, sev string) int {
	var list struct{ Alarms []alarms.Alarm }
	getJSON(cp.t, s.httpURL()+"/api/v1/alarms?device="+dev+"&severity="+sev, &list)
	return len(list.Alarms)
}

// TestClusterLiveAddedDevice: devices added to the registry while two
// instances own their partitions (the change applied on both, through the
// path the registry API takes: devices.Live, followed by the pipeline and
// the partitions) belong to their partition at once. A new detector that
// never speaks is raised offline by the owner of its partition, within its
// grace, and by no other instance; a device removed again is dropped (no
// offline alarm for it).
func TestClusterLiveAddedDevice(t *testing.T) {
	const parts = 4
	nc := testenv.StartNATSCluster(t, cluster.ServerMappings(parts))
	rcv := newReceiver(t)
	cp := startClusterPair(t, nc, parts, writeLedger(t, rcv.URL), func(c *Config) {
		c.Liveness.Tick = 100 * time.Millisecond
		c.NBIoT.CTWing.Token, c.GB26875.Listen = "", ""
	})
	// One new detector in a partition of each instance, and one removed
	// again right away.
	var added []string
	for _, want := range []*service{cp.a, cp.b} {
		for i := 0; ; i++ {
			id := fmt.Sprintf("sm-live-%d", i)
			if owner, _ := cp.roles(id); owner == want && !slices.Contains(added, id) {
				added = append(added, id)
				break
			}
		}
	}
	entry := func(id string) devices.DeviceEntry {
		return devices.DeviceEntry{ID: id, Kind: "smoke", Grid: "450204002003", Address: "鹅山路40号", Heartbeat: 500 * time.Millisecond}
	}
	const gone = "sm-live-gone"
	for _, s := range []*service{cp.a, cp.b} {
		if _, _, err := s.registry.Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{entry(added[0]), entry(added[1]), entry(gone)}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.registry.Apply(&devices.Change{DeleteDevices: []string{gone}}); err != nil {
			t.Fatal(err)
		}
	}
	added0 := time.Now()
	for _, id := range added {
		owner, other := cp.roles(id)
		testenv.WaitFor(t, 30*time.Second, id+" raised offline by its owner", func() bool {
			return cp.alarmsIn(owner, id, "offline") == 1
		})
		if n := cp.alarmsIn(other, id, "offline"); n != 0 {
			t.Errorf("%s: raised offline by the instance that does not own it (%d alarms)", id, n)
		}
	}
	t.Logf("new devices raised offline by their owners %v after the last registry change (grace 1.5 s from their addition)", time.Since(added0).Round(time.Millisecond))
	// Bounded negative check: several graces later, still nothing from the
	// others, and nothing for the removed device.
	time.Sleep(2 * time.Second)
	for _, id := range added {
		_, other := cp.roles(id)
		if n := cp.alarmsIn(other, id, "offline"); n != 0 {
			t.Errorf("%s: raised offline by the instance that does not own it (%d alarms)", id, n)
		}
	}
	for _, s := range []*service{cp.a, cp.b} {
		if n := cp.alarmsIn(s, gone, "offline"); n != 0 {
			t.Errorf("the removed device was raised offline (%d alarms)", n)
		}
	}
}
