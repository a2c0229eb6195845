package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestRunFailover (issue 15): firesim run is given two brokers (two real
// Mosquittos standing for two nodes of a cluster); the first is stopped
// while it publishes; it goes on through the second, and every message it
// sent arrives on one or the other (the first is started again at the end
// for what it had acknowledged and not yet passed on).
func TestRunFailover(t *testing.T) {
	a, b := testenv.StartMosquitto(t), testenv.StartMosquitto(t)
	sa, sb := newMsgSet(t, a.URL), newMsgSet(t, b.URL)
	dir := t.TempDir()
	ledger := filepath.Join(dir, "ledger.yaml")
	var out bytes.Buffer
	if code := firesim(context.Background(), []string{"ledger", "-devices", "50", "-o", ledger}, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	const n = 3000
	var mu sync.Mutex
	var runOut bytes.Buffer
	w := &syncWriter{mu: &mu, w: &runOut}
	code := make(chan int, 1)
	go func() {
		code <- firesim(context.Background(), []string{"run", "-broker", a.URL + "," + b.URL, "-ledger", ledger, "-rate", "1000",
			"-count", strconv.Itoa(n), "-client-id", "firesim-failover"}, w, w)
	}()
	testenv.WaitFor(t, 15*time.Second, "messages through the first broker", func() bool { return sa.len() >= 300 })
	a.Stop()
	var c int
	select {
	case c = <-code:
	case <-time.After(30 * time.Second):
		t.Fatal("firesim run did not finish")
	}
	mu.Lock()
	summary := runOut.String()
	mu.Unlock()
	if c != 0 || !strings.Contains(summary, fmt.Sprintf("sent %d", n)) || !strings.Contains(summary, "unacknowledged 0") {
		t.Fatalf("exit %d:\n%s", c, summary)
	}
	if sb.len() == 0 {
		t.Fatalf("nothing arrived through the second broker:\n%s", summary)
	}
	a.Start()
	testenv.WaitFor(t, 15*time.Second, "every message on one broker or the other", func() bool { return union(sa, sb) >= n })
	t.Logf("%d messages through the first broker, %d through the second", sa.len(), sb.len())
}

// msgSet is the distinct messages (topic and payload) a persistent
// subscriber got.
type msgSet struct {
	mu   sync.Mutex
	msgs map[string]bool
}

func newMsgSet(t *testing.T, url string) *msgSet {
	s := &msgSet{msgs: map[string]bool{}}
	subscribed := make(chan struct{})
	var once sync.Once
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("failover-sub").SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.Subscribe("fw/v1/up/#", 1, func(_ mqtt.Client, m mqtt.Message) {
			s.mu.Lock()
			s.msgs[m.Topic()+" "+string(m.Payload())] = true
			s.mu.Unlock()
		})
		go func() {
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				once.Do(func() { close(subscribed) })
			}
		}()
	})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber on %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber not subscribed within 10 s")
	}
	return s
}

func (s *msgSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// union counts the distinct messages of both sets.
func union(a, b *msgSet) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(a.msgs)
	for m := range b.msgs {
		if !a.msgs[m] {
			n++
		}
	}
	return n
}
