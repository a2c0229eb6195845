package pahoconn

import (
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Issue 15: QoS 1 messages published while the client reconnects (its
// broker, or NATS node, died) are sent in the order they were published
// once it is back. paho's plain memory store returns its keys in map
// order, so the backlog went out shuffled: a device's messages more than a
// minute (rules.ReorderTolerance) older than one sent before them were
// taken for a clock that went back, and after three in a row firewatch
// raised false 时钟异常 (clock) faults (26 of 68 pushes in a `make cluster`
// run whose fleet needed 89 s to reconnect). Failed on the old store.
func TestStoreResumesInOrder(t *testing.T) {
	m := testenv.StartMosquitto(t)
	ready := make(chan struct{})
	lost := make(chan struct{}, 1)
	o := paho.NewClientOptions().AddBroker(m.URL).SetClientID("dev").SetCleanSession(false).
		SetStore(NewStore()).SetOrderMatters(true).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} }).
		// Reconnected only once the subscriber below listens.
		SetReconnectingHandler(func(paho.Client, *paho.ClientOptions) { <-ready })
	pub := paho.NewClient(o)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	defer close(ready)

	m.Stop()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not notice the broker's death")
	}
	const n = 40
	var toks []paho.Token
	for i := range n {
		toks = append(toks, pub.Publish("fw/v1/up/sm-1/telemetry", 1, false, strconv.Itoa(i)))
	}
	m.Start()
	got := make(chan int, n)
	sub := client(t, m.URL, "sub", nil)
	if tok := sub.Subscribe("fw/v1/up/#", 1, func(_ paho.Client, msg paho.Message) {
		v, _ := strconv.Atoi(string(msg.Payload()))
		got <- v
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	ready <- struct{}{} // let one reconnect attempt through; close (deferred) the rest
	var order []int
	deadline := time.After(20 * time.Second)
	for len(order) < n {
		select {
		case v := <-got:
			order = append(order, v)
		case <-deadline:
			t.Fatalf("%d of %d messages arrived: %v", len(order), n, order)
		}
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("the backlog arrived out of order: %v", order)
		}
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish not acknowledged: %v", tok.Error())
		}
	}
}
