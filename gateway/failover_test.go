package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestBrokerFailover (issue 15): the gateway is given two brokers (two
// real Mosquittos standing for two nodes of a cluster). It connects to the
// first; that one is stopped and the readings continue through the second;
// every reading sequence number arrives on one broker or the other, none
// lost across the failover. Each broker's collector has a persistent
// session, and the stopped broker is started again at the end so that
// what it acknowledged before it stopped is read too (in a NATS cluster
// the replicated stream holds it).
func TestBrokerFailover(t *testing.T) {
	a, b := testenv.StartMosquitto(t), testenv.StartMosquitto(t)
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	bus := simBus(t, 115200)
	el := bus.AddSlave(1, maps["ARCM300"])
	el.Set("residual_current_ma", 0, 87)
	ca, cb := newSeqCollector(t, a.URL), newSeqCollector(t, b.URL)

	cfg := gateway.Defaults()
	cfg.GatewayID = "gw-t"
	cfg.MQTT.Brokers = []string{a.URL, b.URL}
	cfg.MQTT.ReconnectMax = time.Second
	cfg.MQTT.PublishTimeout = time.Second
	cfg.Spool.Dir = t.TempDir()
	cfg.StatusInterval = time.Second
	cfg.Buses = []gateway.BusConfig{{Port: bus.Path, Baud: 115200, Timeout: 100 * time.Millisecond,
		Devices: []gateway.DeviceConfig{{ID: "el-1", Model: "ARCM300", Slave: 1, Interval: 100 * time.Millisecond, OfflineAfter: 3}}}}
	g, err := gateway.New(cfg, maps, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10 s")
		}
	})
	defer stop()

	testenv.WaitFor(t, 10*time.Second, "readings through the first broker", func() bool { return ca.count() >= 10 })
	if n := cb.count(); n != 0 {
		t.Fatalf("%d readings through the second broker while the first was up", n)
	}
	a.Stop()
	stopped := time.Now()
	testenv.WaitFor(t, 15*time.Second, "readings through the second broker", func() bool { return cb.count() >= 10 })
	t.Logf("first reading through the second broker %s after the first stopped", cb.first().Sub(stopped).Round(time.Millisecond))
	stop()
	a.Start() // what it acknowledged and had not yet passed on
	last := max(ca.max(), cb.max())
	testenv.WaitFor(t, 15*time.Second, "every sequence number up to the last on one broker or the other", func() bool {
		return len(missing(ca.min(), last, ca, cb)) == 0
	})
	if first := ca.min(); first > 1 {
		t.Errorf("the first reading through the first broker has seq %d, want 0 or 1", first)
	}
}

// missing lists the sequence numbers of el-1 from first to last that
// neither collector has.
func missing(first, last int64, cs ...*seqCollector) []int64 {
	var out []int64
	for s := first; s <= last; s++ {
		found := false
		for _, c := range cs {
			c.mu.Lock()
			found = found || c.seqs[s]
			c.mu.Unlock()
		}
		if !found {
			out = append(out, s)
		}
	}
	return out
}

// seqCollector records el-1's sequence numbers in the gateway's batches,
// with a persistent session.
type seqCollector struct {
	mu      sync.Mutex
	seqs    map[int64]bool
	firstAt time.Time
}

func newSeqCollector(t *testing.T, url string) *seqCollector {
	c := &seqCollector{seqs: map[int64]bool{}}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("seq-collector").SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetOrderMatters(true)
	subscribed := make(chan struct{})
	var once sync.Once
	opts.SetOnConnectHandler(func(cl paho.Client) {
		tok := cl.Subscribe("fw/v1/up/gw/gw-t/batch", 1, func(_ paho.Client, m paho.Message) {
			var b struct{ Readings []element }
			if err := json.Unmarshal(m.Payload(), &b); err != nil {
				t.Errorf("batch is not JSON: %v", err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, r := range b.Readings {
				if r.Dev == "el-1" {
					if len(c.seqs) == 0 {
						c.firstAt = time.Now()
					}
					c.seqs[r.Seq] = true
				}
			}
		})
		go func() {
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				once.Do(func() { close(subscribed) })
			}
		}()
	})
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect collector: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("collector not subscribed within 10 s")
	}
	return c
}

func (c *seqCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs)
}

func (c *seqCollector) first() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstAt
}

func (c *seqCollector) max() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := int64(-1)
	for s := range c.seqs {
		m = max(m, s)
	}
	return m
}

func (c *seqCollector) min() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := int64(-1)
	for s := range c.seqs {
		if m < 0 || s < m {
			m = s
		}
	}
	return m
}
