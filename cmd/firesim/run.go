package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
	"github.com/firewatch-iot/firewatch/internal/pahoconn"
)

// scenarioList is the repeatable -scenario flag.
type scenarioList []sim.Scenario

func (s *scenarioList) String() string {
	var parts []string
	for _, sc := range *s {
		parts = append(parts, sc.String())
	}
	return strings.Join(parts, ",")
}

func (s *scenarioList) Set(v string) error {
	sc, err := sim.ParseScenario(v)
	if err != nil {
		return err
	}
	*s = append(*s, sc)
	return nil
}

// runOptions drive publish; cmdRun fills them from flags, tests directly.
type runOptions struct {
	rate      float64 // messages per second, all devices together
	count     int64   // stop after this many messages; 0 = no limit
	scenarios []sim.Scenario
	delay     time.Duration // first scenario after delay, each next one delay later
	seed      int64
	status    time.Duration // heartbeat interval per device
	tick      time.Duration // token refill period
	progress  time.Duration // progress line period
	drain     time.Duration // how long to wait for outstanding acks at the end
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run",
		"Publish the simulated fleet of a ledger to an MQTT broker with QoS 1, on\n"+
			"fw/v1/up/{device}/{telemetry|event|status} (docs/mqtt.md), round-robin across devices at\n"+
			"a fixed total rate, each device also sending a status heartbeat now and then. Scenarios\n"+
			"start one after another, -scenario-delay apart, and hold their dangerous values (at\n"+
			"least 90 s) so that the default rules fire. Stops on Ctrl-C, SIGTERM, -duration or -count.\n\n"+
			"Scenarios:\n"+
			"  fire:<village code|device id>        smoke alarms in the village, cable temperatures past 70 °C\n"+
			"  charger-overheat[:<device id>]       one charging slot from 40 to ~80 °C in 30 s\n"+
			"  hydrant-pressure-loss[:<device id>]  pressure from ~0.3 to 0.05 MPa in 20 s\n"+
			"  (without a device id: the first charger / hydrant of the ledger)",
		"  firesim run -ledger var/ledger.yaml -rate 100 -scenario fire:450204002003\n"+
			"  firesim run -rate 20000 -duration 1m -scenario charger-overheat -scenario hydrant-pressure-loss:hy-330326-0004\n",
		stderr)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl://, ws://); several, comma-separated, to fail over between (a cluster's nodes)")
	ledgerPath := fs.String("ledger", "var/ledger.yaml", "ledger file (write one with 'firesim ledger')")
	rate := fs.Float64("rate", 100, "messages per second, all devices together")
	var scenarios scenarioList
	fs.Var(&scenarios, "scenario", "incident scenario `name[:target]`, repeatable")
	delay := fs.Duration("scenario-delay", 20*time.Second, "delay before the first scenario, and between scenarios")
	hold := fs.Duration("scenario-hold", 0, "how long scenarios hold their dangerous values before recovering; 0 = until the end, else at least 90s")
	duration := fs.Duration("duration", 0, "stop after this long; 0 = until Ctrl-C")
	count := fs.Int64("count", 0, "stop after this many messages; 0 = unbounded")
	clientID := fs.String("client-id", "firesim", "MQTT client id")
	username := fs.String("username", "", "MQTT user name")
	password := fs.String("password", "", "MQTT password (default $FIREWATCH_MQTT_PASSWORD)")
	secretsFile := fs.String("secrets", "", "each device on a connection of its own with its own credentials (user name and client id = its id, password from this file of 'firesim ledger -secrets'), answering the linkage commands sent to it; instead of one connection for the fleet")
	seed := fs.Int64("seed", 1, "seed of the device behaviour")
	status := fs.Duration("status-interval", sim.DefaultStatusInterval, "status heartbeat interval of each device")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var bad []string
	if !(*rate > 0) || math.IsInf(*rate, 0) {
		bad = append(bad, fmt.Sprintf("-rate %g: want a positive number", *rate))
	}
	if *count < 0 || *duration < 0 || *delay < 0 || *status <= 0 {
		bad = append(bad, "-count, -duration and -scenario-delay must not be negative, -status-interval must be positive")
	}
	if *hold < 0 || (*hold > 0 && *hold < sim.MinHold) {
		bad = append(bad, fmt.Sprintf("-scenario-hold %v: want 0 (until the end) or at least %v, the longest rule duration plus a margin", *hold, sim.MinHold))
	}
	if len(bad) > 0 {
		fmt.Fprintln(stderr, "firesim run: "+strings.Join(bad, "\n  "))
		return errUsage
	}
	for i := range scenarios {
		scenarios[i].Hold = *hold
	}

	l, err := devices.LoadLedger(*ledgerPath)
	if err != nil {
		return fmt.Errorf("%w (write a demo one with: firesim ledger -o %s)", err, *ledgerPath)
	}
	if len(l.Devices) == 0 {
		return fmt.Errorf("ledger %s has no devices", *ledgerPath)
	}
	// Check the scenarios against the ledger before connecting.
	check := sim.NewFleet(l, *seed)
	for _, sc := range scenarios {
		if err := check.Check(sc); err != nil {
			return err
		}
	}

	// One lock for both: paho's callbacks write from its goroutines, and
	// the two may be one stream.
	var mu sync.Mutex
	out, errs := &syncWriter{mu: &mu, w: stdout}, &syncWriter{mu: &mu, w: stderr}
	var pub publisher
	if *secretsFile != "" {
		secrets, err := readSecrets(*secretsFile)
		if err != nil {
			return err
		}
		fleet, err := connectDevices(*broker, l, secrets, 3*time.Minute, errs)
		if err != nil {
			return err
		}
		defer fleet.Disconnect(250)
		pub = fleet
	} else {
		client, err := connect(*broker, *clientID, *username, envOr(*password, "FIREWATCH_MQTT_PASSWORD"), errs)
		if err != nil {
			return err
		}
		defer client.Disconnect(250)
		pub = mqttPublisher{client}
	}

	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	fmt.Fprintf(out, "firesim run: %d devices from %s → %s at %g messages/s (模拟设备已接入)\n", len(l.Devices), *ledgerPath, *broker, *rate)
	_, err = publish(ctx, l, pub, runOptions{
		rate: *rate, count: *count, scenarios: scenarios, delay: *delay, seed: *seed, status: *status,
		tick: 10 * time.Millisecond, progress: 5 * time.Second, drain: 10 * time.Second,
	}, out)
	return err
}

// brokerList splits a -broker flag into its URLs.
func brokerList(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// connect opens the MQTT session. The session is persistent (clean
// session off) so that QoS 1 messages in flight survive a broker restart.
func connect(broker, clientID, username, password string, log io.Writer) (mqtt.Client, error) {
	// Several brokers: paho tries them in order at every (re)connect and
	// stays on the first that answers; the persistent session's
	// unacknowledged messages are sent again to the one it reaches.
	opts := mqtt.NewClientOptions()
	for _, b := range brokerList(broker) {
		opts.AddBroker(b)
	}
	var trying atomic.Value // the broker of the latest connection attempt
	trying.Store(broker)
	opts.SetConnectionAttemptHandler(func(u *url.URL, tc *tls.Config) *tls.Config {
		trying.Store(u.Redacted())
		return tc
	})
	opts.SetStore(pahoconn.NewStore()) // messages in flight at a failover: see NewStore
	opts.SetClientID(clientID).
		SetUsername(username).
		SetPassword(password).
		SetCleanSession(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			fmt.Fprintf(log, "%s connection to %s lost: %v; reconnecting (与代理断开，正在重连)\n", time.Now().Format(time.TimeOnly), trying.Load(), err)
		}).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {}).
		SetOnConnectHandler(func(mqtt.Client) {
			fmt.Fprintf(log, "%s connected to %s as %s\n", time.Now().Format(time.TimeOnly), trying.Load(), clientID)
		})
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect to %s: timed out", broker)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", broker, err)
	}
	return c, nil
}

// publisher sends one message with QoS 1; the token completes when the
// broker acknowledges it.
type publisher interface {
	Publish(topic string, payload []byte) mqtt.Token
}

type mqttPublisher struct{ c mqtt.Client }

func (p mqttPublisher) Publish(topic string, payload []byte) mqtt.Token {
	return p.c.Publish(topic, 1, false, payload)
}

// runStats are the totals of a publish run.
type runStats struct {
	sent, acked, failed int64
	incidents           []*sim.Incident
}

// publish runs the fleet until ctx ends or opts.count messages are sent.
// A ticker refills a token bucket at opts.rate; each tick sends as many
// messages as there are whole tokens, so the rate holds without a sleep
// per message and a slow broker is not flooded afterwards (the bucket holds
// at most 100 ms of messages). Acknowledgements are counted by one
// goroutine reading the tokens in order; its bounded queue is the limit on
// messages in flight.
func publish(ctx context.Context, l *devices.Ledger, pub publisher, opts runOptions, out io.Writer) (runStats, error) {
	f := sim.NewFleet(l, opts.seed)
	if opts.status > 0 {
		f.StatusInterval = opts.status
	}
	var st runStats
	var acked, failed atomic.Int64
	var lastErr atomic.Value // string
	pending := make(chan mqtt.Token, 8192)
	quit := make(chan struct{})
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		for tok := range pending {
			select {
			case <-tok.Done():
			case <-quit:
				return
			}
			if err := tok.Error(); err != nil {
				failed.Add(1)
				lastErr.Store(err.Error())
			} else {
				acked.Add(1)
			}
		}
	}()

	start := time.Now()
	type due struct {
		at time.Time
		sc sim.Scenario
	}
	var schedule []due
	for i, sc := range opts.scenarios {
		at := start.Add(time.Duration(i+1) * opts.delay)
		schedule = append(schedule, due{at, sc})
		fmt.Fprintf(out, "scenario %s at +%v\n", sc, at.Sub(start))
	}

	tick := time.NewTicker(opts.tick)
	defer tick.Stop()
	progress := time.NewTicker(opts.progress)
	defer progress.Stop()
	burst := math.Max(1, opts.rate/10)
	tokens, last := 0.0, start
	lastSent, lastProgress := int64(0), start
	buf := make([]byte, 0, 512)
	done := func() bool { return opts.count > 0 && st.sent >= opts.count }
	report := func(now time.Time) {
		rate := float64(st.sent-lastSent) / now.Sub(lastProgress).Seconds()
		lastSent, lastProgress = st.sent, now
		errText := ""
		if e, ok := lastErr.Load().(string); ok && failed.Load() > 0 {
			errText = " (last: " + e + ")"
		}
		fmt.Fprintf(out, "%s sent %d (%.1f/s), acked %d, errors %d%s\n",
			now.Format(time.TimeOnly), st.sent, rate, acked.Load(), failed.Load(), errText)
	}

loop:
	for !done() {
		select {
		case <-ctx.Done():
			break loop
		case now := <-progress.C:
			report(now)
		case now := <-tick.C:
			for len(schedule) > 0 && !now.Before(schedule[0].at) {
				in, err := f.Start(schedule[0].sc, now)
				if err != nil { // checked at startup; only a bug gets here
					fmt.Fprintf(out, "%s scenario %s: %v\n", now.Format(time.TimeOnly), schedule[0].sc, err)
				} else {
					st.incidents = append(st.incidents, in)
					fmt.Fprintf(out, "%s %s\n", now.Format(time.TimeOnly), in)
				}
				schedule = schedule[1:]
			}
			tokens = math.Min(burst, tokens+opts.rate*now.Sub(last).Seconds())
			last = now
			for ; tokens >= 1 && !done(); tokens-- {
				topic, p := f.Next(now, buf)
				// paho keeps the payload until the broker acknowledges it.
				tok := pub.Publish(topic, bytes.Clone(p))
				st.sent++
				// A full queue means the broker is slow or away: wait for
				// it, and keep reporting meanwhile.
				for queued := false; !queued; {
					select {
					case pending <- tok:
						queued = true
					case now := <-progress.C:
						report(now)
					case <-ctx.Done():
						break loop
					}
				}
			}
		}
	}

	close(pending)
	drain := time.NewTimer(opts.drain)
	defer drain.Stop()
	select {
	case <-ackDone:
	case <-drain.C:
		close(quit)
		<-ackDone
	}
	st.acked, st.failed = acked.Load(), failed.Load()
	elapsed := time.Since(start)
	fmt.Fprintf(out, "firesim run stopped after %v: sent %d (%.1f/s), acked %d, errors %d, unacknowledged %d\n",
		elapsed.Round(time.Millisecond), st.sent, float64(st.sent)/elapsed.Seconds(), st.acked, st.failed, st.sent-st.acked-st.failed)
	return st, nil
}

// syncWriter serialises writes from the publish loop and paho's callbacks.
type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
