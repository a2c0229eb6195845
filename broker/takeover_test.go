package broker

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestReconnectKeepsSubscription: a device that reconnects with its own
// client id while the broker still holds its previous connection (a 4G
// link that dropped without a FIN: the new CONNECT takes the session over)
// must get the commands published after its new SUBSCRIBE. mochi's
// goroutine of the old connection, ending after the takeover, deleted
// the client id's entry — the new client's — and its subscriptions, so
// that downlink commands to the device were dropped silently until its
// next reconnect. Rounds of takeover, subscribe, publish; each command
// must arrive.
func TestReconnectKeepsSubscription(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s, err := Start(Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// About one takeover in a thousand lost its command before the fix,
	// hence the number of rounds (bounded in time below).
	rounds := 1500
	if v, err := strconv.Atoi(os.Getenv("FW_TAKEOVER_ROUNDS")); err == nil {
		rounds = v
	}
	connect := func(got chan string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("sm-1").
			SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		if got != nil {
			tok := c.Subscribe("fw/v1/down/sm-1/#", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
		}
		return c
	}
	old := connect(make(chan string, 10))
	lost, i := 0, 0
	stop := time.Now().Add(15 * time.Second)
	for ; i < rounds && time.Now().Before(stop); i++ {
		got := make(chan string, 10)
		c := connect(got) // takes the session of old over
		want := strconv.Itoa(i)
		if err := s.Publish("fw/v1/down/sm-1/command", []byte(want), false, 1); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("round %d: got %q", i, p)
			}
		case <-time.After(3 * time.Second):
			lost++
			t.Errorf("round %d: the command published after the reconnected client's SUBSCRIBE did not arrive", i)
		}
		old.Disconnect(0)
		old = c
	}
	old.Disconnect(0)
	t.Logf("%d of %d commands lost", lost, i)
}
