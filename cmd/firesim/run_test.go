package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

func testLedger(t *testing.T, n int) *devices.Ledger {
	t.Helper()
	var buf bytes.Buffer
	if err := sim.GenerateLedger(&buf, sim.LedgerOptions{Devices: n}); err != nil {
		t.Fatal(err)
	}
	l, err := devices.ParseLedger("test.yaml", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// doneToken is a token that completed with err.
type doneToken struct{ err error }

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (t doneToken) Wait() bool                     { return true }
func (t doneToken) WaitTimeout(time.Duration) bool { return true }
func (t doneToken) Done() <-chan struct{}          { return closed }
func (t doneToken) Error() error                   { return t.err }

// fakePublisher records messages; every failEvery-th one fails.
type fakePublisher struct {
	mu        sync.Mutex
	topics    []string
	payloads  [][]byte
	failEvery int
}

func (p *fakePublisher) Publish(topic string, payload []byte) mqtt.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topics = append(p.topics, topic)
	p.payloads = append(p.payloads, payload)
	if p.failEvery > 0 && len(p.topics)%p.failEvery == 0 {
		return doneToken{errors.New("not connected")}
	}
	return doneToken{}
}

func fastOptions() runOptions {
	return runOptions{rate: 20000, seed: 1, status: time.Minute, tick: time.Millisecond, progress: time.Hour, drain: time.Second}
}

func TestPublishCount(t *testing.T) {
	l := testLedger(t, 40)
	pub := &fakePublisher{failEvery: 10}
	var out bytes.Buffer
	opts := fastOptions()
	opts.count = 500
	st, err := publish(context.Background(), l, pub, opts, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.sent != 500 || len(pub.topics) != 500 || st.acked != 450 || st.failed != 50 {
		t.Errorf("sent %d (published %d), acked %d, failed %d; want 500, 450 acked, 50 failed", st.sent, len(pub.topics), st.acked, st.failed)
	}
	// Each payload is its own copy: paho keeps it until the broker acks.
	seen := map[string]bool{}
	for i, p := range pub.payloads {
		key := pub.topics[i] + string(p)
		if seen[key] {
			t.Fatalf("message %d repeats an earlier one: %s %s", i, pub.topics[i], p)
		}
		seen[key] = true
		if !bytes.HasPrefix(p, []byte(`{"ts":`)) {
			t.Fatalf("payload %d overwritten: %q", i, p)
		}
	}
	if !strings.Contains(out.String(), "sent 500") {
		t.Errorf("no summary: %s", out.String())
	}
}

func TestPublishScenarios(t *testing.T) {
	l := testLedger(t, 40)
	opts := fastOptions()
	opts.count = 2000
	opts.delay = time.Millisecond
	for _, s := range []string{"charger-overheat", "fire:" + string(l.Devices[0].Grid)} {
		sc, err := sim.ParseScenario(s)
		if err != nil {
			t.Fatal(err)
		}
		opts.scenarios = append(opts.scenarios, sc)
	}
	var out bytes.Buffer
	st, err := publish(context.Background(), l, &fakePublisher{}, opts, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.incidents) != 2 {
		t.Fatalf("%d incidents started:\n%s", len(st.incidents), out.String())
	}
	for _, want := range []string{"scenario charger-overheat started in", "scenario fire started in", "充电柜过热场景开始", "火灾场景开始"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPublishRate checks the token bucket: never faster than the rate
// (plus one bucket), and not grossly slower.
func TestPublishRate(t *testing.T) {
	l := testLedger(t, 40)
	opts := fastOptions()
	opts.rate = 2000
	opts.tick = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	st, err := publish(ctx, l, &fakePublisher{}, opts, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start).Seconds()
	if max := opts.rate*elapsed + opts.rate/10; float64(st.sent) > max {
		t.Errorf("sent %d in %.3fs at rate %g: more than %g", st.sent, elapsed, opts.rate, max)
	}
	if min := opts.rate * 0.5 * 0.3; float64(st.sent) < min {
		t.Errorf("sent %d in %.3fs at rate %g: fewer than %g", st.sent, elapsed, opts.rate, min)
	}
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	ledger := filepath.Join(dir, "sub", "ledger.yaml")
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{nil, 2, "Usage:"},
		{[]string{"help"}, 0, "firesim run"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"ledger", "-h"}, 0, "-devices"},
		{[]string{"run", "-h"}, 0, "-scenario-delay"},
		{[]string{"receiver", "-h"}, 0, "FIREWATCH_DISPATCH_SECRET"},
		{[]string{"ledger", "-devices", "25", "-o", ledger}, 0, "25 devices"},
		{[]string{"ledger", "-devices", "0", "-o", ledger}, 1, "want at least 1"},
		{[]string{"ledger", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"run", "-ledger", ledger, "-rate", "-1"}, 2, "-rate -1"},
		{[]string{"run", "-ledger", ledger, "-scenario-hold", "30s"}, 2, "at least 1m30s"},
		{[]string{"run", "-ledger", ledger, "-scenario", "flood"}, 2, "unknown name"},
		{[]string{"run", "-ledger", ledger, "-scenario", "hydrant-pressure-loss:el-450204-0001"}, 1, "not hydrant"},
		{[]string{"run", "-ledger", filepath.Join(dir, "none.yaml")}, 1, "firesim ledger -o"},
		{[]string{"receiver", "-secret", ""}, 2, "no secret"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("FIREWATCH_DISPATCH_SECRET", "")
			var out bytes.Buffer
			code := firesim(context.Background(), tc.args, &out, &out)
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d, want %d; output lacks %q?\n%s", code, tc.code, tc.want, out.String())
			}
		})
	}
	if _, err := devices.LoadLedger(ledger); err != nil {
		t.Errorf("written ledger: %v", err)
	}
}

// TestRunMosquitto publishes through a real Mosquitto and counts what a
// subscriber receives.
func TestRunMosquitto(t *testing.T) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			testenv.Skip(t, "mosquitto not installed (Debian package mosquitto)")
		}
	}
	port := freePort(t)
	broker := "tcp://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var got atomic.Int64
	var sub mqtt.Client
	deadline := time.Now().Add(10 * time.Second)
	for { // poll until the broker accepts connections
		sub = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("firesim-test-sub"))
		tok := sub.Connect()
		tok.Wait()
		if tok.Error() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto on %s: %v", broker, tok.Error())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe("fw/v1/up/#", 1, func(_ mqtt.Client, m mqtt.Message) { got.Add(1) })
	if tok.Wait(); tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	dir := t.TempDir()
	ledger := filepath.Join(dir, "ledger.yaml")
	var out bytes.Buffer
	if code := firesim(context.Background(), []string{"ledger", "-devices", "50", "-o", ledger}, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	const n = 1000
	code := firesim(context.Background(), []string{"run", "-broker", broker, "-ledger", ledger, "-rate", "5000", "-count", strconv.Itoa(n),
		"-client-id", fmt.Sprintf("firesim-test-%d", port), "-scenario", "charger-overheat", "-scenario-delay", "10ms"}, &out, &out)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("sent %d", n)) || !strings.Contains(out.String(), "errors 0, unacknowledged 0") {
		t.Errorf("summary:\n%s", out.String())
	}
	for deadline := time.Now().Add(10 * time.Second); got.Load() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got.Load() != n {
		t.Errorf("subscriber received %d of %d messages", got.Load(), n)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
