package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/devices"
)

// loadOptions configure `firesim load`: a bounded, paced stream of normal
// readings for throughput measurements, with probe alarms for latency.
type loadOptions struct {
	broker, ledger, clientID string
	username, password       string
	rate                     float64 // readings per second
	duration                 time.Duration
	count                    int64 // readings; 0: until duration
	shape                    string
	batch                    int
	clients                  int
	probeEvery               time.Duration
	progress                 time.Duration
	json                     bool
	stall                    func() // tests: called after every pacing round, to stall the publisher
}

// loadResult is what `firesim load -json` prints at the end.
type loadResult struct {
	Readings int64   `json:"readings"`
	Messages int64   `json:"messages"`
	Acked    int64   `json:"acked"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate"`
	Probes   int64   `json:"probes"`
}

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("firesim load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o loadOptions
	fs.StringVar(&o.broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL; several, comma-separated, to fail over between")
	fs.StringVar(&o.ledger, "ledger", "var/ledger.yaml", "ledger whose devices publish")
	fs.StringVar(&o.clientID, "client-id", "firesim-load", "MQTT client id prefix (one client per -clients)")
	fs.StringVar(&o.username, "username", "", "MQTT username")
	fs.StringVar(&o.password, "password", "", "MQTT password")
	fs.Float64Var(&o.rate, "rate", 10000, "readings per second")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long to publish (the run always stops by itself)")
	fs.Int64Var(&o.count, "count", 0, "readings to publish, 0: until -duration")
	fs.StringVar(&o.shape, "shape", "single", "single: one MQTT message per reading (NB-IoT); batch: gateway batches")
	fs.IntVar(&o.batch, "batch", 100, "readings per gateway batch")
	fs.IntVar(&o.clients, "clients", 2, "MQTT connections to publish on")
	fs.DurationVar(&o.probeEvery, "probe-every", 0, "publish a probe alarm this often (charger door_open, raised then cleared), 0: none")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "progress line interval")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on the last line")
	fs.Usage = func() {
		fmt.Fprint(stderr, "firesim load — publish a paced stream of normal readings for throughput tests\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rate <= 0 || o.duration <= 0 || o.clients < 1 || o.batch < 1 || (o.shape != "single" && o.shape != "batch") {
		fs.Usage()
		return errUsage
	}
	l, err := devices.LoadLedger(o.ledger)
	if err != nil {
		return err
	}
	res, err := runLoad(ctx, l, o, stdout)
	if err != nil {
		return err
	}
	if o.json {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	}
	return nil
}

// loadGen makes the payloads: every device reports a normal value of one
// metric of its kind, with its own sequence number.
type loadGen struct {
	devs  []*devices.Device
	seq   []uint32
	gws   []string            // gateways, for batches
	byGW  map[string][]uint32 // gateway → device positions
	next  int
	gwPos map[string]int
	probe []*devices.Device // chargers that carry probe alarms
}

func newLoadGen(l *devices.Ledger) *loadGen {
	g := &loadGen{byGW: map[string][]uint32{}, gwPos: map[string]int{}}
	// One probe charger per station: probes in one village would be
	// grouped as a storm, which is not what the latency probe measures.
	probed := map[*devices.Station]bool{}
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.Kind == devices.KindCharger && !probed[d.Station] {
			probed[d.Station] = true
			g.probe = append(g.probe, d)
		}
		g.devs = append(g.devs, d)
		if d.Gateway != "" {
			if _, ok := g.byGW[d.Gateway]; !ok {
				g.gws = append(g.gws, d.Gateway)
			}
			g.byGW[d.Gateway] = append(g.byGW[d.Gateway], uint32(len(g.devs)-1))
		}
	}
	g.seq = make([]uint32, len(g.devs))
	return g
}

// appendReading appends {"ts":…,"seq":…,"m":{metric: value}} for device i.
func (g *loadGen) appendReading(b []byte, i int, ts int64, dev bool) []byte {
	d := g.devs[i]
	g.seq[i]++
	b = append(b, '{')
	if dev {
		b = append(b, `"dev":"`...)
		b = append(b, d.ID...)
		b = append(b, `",`...)
	}
	b = append(b, `"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, uint64(g.seq[i]), 10)
	v := float64(i%50) / 10 // varies by device, stays far from thresholds
	switch d.Kind {
	case devices.KindElectrical:
		b = append(b, `,"m":{"residual_current_ma":`...)
		b = strconv.AppendFloat(b, 40+v, 'f', 1, 64)
	case devices.KindSmoke:
		b = append(b, `,"m":{"battery_pct":`...)
		b = strconv.AppendFloat(b, 90+v, 'f', 1, 64)
	case devices.KindHydrant:
		b = append(b, `,"m":{"pressure_mpa":`...)
		b = strconv.AppendFloat(b, 0.3+v/100, 'f', 3, 64)
	default:
		b = append(b, `,"ch":1,"m":{"slot_temp_c":`...)
		b = strconv.AppendFloat(b, 30+v, 'f', 1, 64)
	}
	return append(b, "}}"...)
}

// single returns the next one-reading message.
func (g *loadGen) single(b []byte, ts int64) (string, []byte) {
	i := g.next % len(g.devs)
	g.next++
	return "fw/v1/up/" + g.devs[i].ID + "/telemetry", g.appendReading(b, i, ts, false)
}

// batch returns the next gateway batch of up to n readings.
func (g *loadGen) batch(b []byte, ts int64, n int) (string, []byte, int) {
	gw := g.gws[g.next%len(g.gws)]
	g.next++
	members := g.byGW[gw]
	b = append(b, `{"readings":[`...)
	k := 0
	for ; k < n && k < len(members); k++ {
		if k > 0 {
			b = append(b, ',')
		}
		pos := g.gwPos[gw] % len(members)
		g.gwPos[gw]++
		b = g.appendReading(b, int(members[pos]), ts, true)
	}
	return "fw/v1/up/gw/" + gw + "/batch", append(b, "]}"...), k
}

// probeMsg returns a door_open event of a probe charger: raised on even
// probes, cleared on odd ones, so that every raise is a new alarm, each
// charger in turn. The
// device time is the publish time: the receiver measures latency from it.
func (g *loadGen) probeMsg(n int64, ts int64) (string, []byte) {
	d := g.probe[(n/2)%int64(len(g.probe))]
	i := int(d.Index) // devs mirrors the ledger order
	g.seq[i]++
	active := n%2 == 0
	b := fmt.Appendf(nil, `{"ts":%d,"seq":%d,"ch":1,"event":"door_open","active":%t}`, ts, g.seq[i], active)
	return "fw/v1/up/" + d.ID + "/event", b
}

// runLoad publishes until the duration or count is reached, pacing by the
// clock: each round sends what the rate allows by now, then waits a
// millisecond, so neither a slow start nor a stall is made up in a burst
// of more than 50 ms of readings.
func runLoad(ctx context.Context, l *devices.Ledger, o loadOptions, out io.Writer) (loadResult, error) {
	g := newLoadGen(l)
	if len(g.devs) == 0 {
		return loadResult{}, errors.New("the ledger has no devices")
	}
	if o.shape == "batch" && len(g.gws) == 0 {
		return loadResult{}, errors.New("batch shape needs devices with a gateway in the ledger (firesim ledger -gateways N)")
	}
	if o.probeEvery > 0 && len(g.probe) == 0 {
		return loadResult{}, errors.New("probes need a charging cabinet in the ledger")
	}
	clients := make([]mqtt.Client, o.clients)
	for i := range clients {
		c, err := connectLoad(o, i)
		if err != nil {
			return loadResult{}, err
		}
		defer c.Disconnect(250)
		clients[i] = c
	}
	var res loadResult
	var acked, failed atomic.Int64
	pending := make(chan mqtt.Token, 20000)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for tok := range pending {
			tok.Wait()
			if tok.Error() != nil {
				failed.Add(1)
			} else {
				acked.Add(1)
			}
		}
	}()
	start := time.Now()
	deadline := start.Add(o.duration)
	nextProgress := start.Add(o.progress)
	nextProbe := start.Add(o.probeEvery)
	var buf []byte
	c := 0
	publish := func(topic string, payload []byte) bool {
		tok := clients[c%len(clients)].Publish(topic, 1, false, payload)
		c++
		res.Messages++
		select {
		case pending <- tok:
			return true
		case <-ctx.Done():
			return false
		}
	}
	lastN, lastT := int64(0), start
	var skipped int64 // readings the pacing gave up on after a stall: not sent
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) || (o.count > 0 && res.Readings >= o.count) {
			break
		}
		if o.probeEvery > 0 && !now.Before(nextProbe) {
			nextProbe = nextProbe.Add(o.probeEvery)
			topic, p := g.probeMsg(res.Probes, now.UnixMilli())
			res.Probes++
			publish(topic, p)
		}
		if !now.Before(nextProgress) {
			rate := float64(res.Readings-lastN) / now.Sub(lastT).Seconds()
			lastN, lastT = res.Readings, now
			fmt.Fprintf(out, "%s load: %d readings (%.0f/s), acked %d msgs, errors %d\n", now.Format(time.TimeOnly), res.Readings, rate, acked.Load(), failed.Load())
			nextProgress = nextProgress.Add(o.progress)
		}
		due := int64(o.rate * now.Sub(start).Seconds())
		if behind := due - res.Readings; float64(behind) > o.rate/20 {
			skipped += behind - int64(o.rate/20)
			res.Readings = due - int64(o.rate/20) // never burst more than 50 ms
		}
		ts := now.UnixMilli()
		for res.Readings < due && ctx.Err() == nil {
			if o.count > 0 && res.Readings >= o.count {
				break
			}
			var topic string
			var n int
			if o.shape == "batch" {
				topic, buf, n = g.batch(make([]byte, 0, 96*o.batch), ts, o.batch)
			} else {
				topic, buf = g.single(make([]byte, 0, 96), ts)
				n = 1
			}
			res.Readings += int64(n)
			if !publish(topic, buf) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		if o.stall != nil {
			o.stall()
		}
	}
	close(pending)
	wg.Wait()
	res.Readings -= skipped // Readings paces the loop; report what was sent
	res.Seconds = time.Since(start).Seconds()
	res.Rate = float64(res.Readings) / res.Seconds
	res.Acked, res.Errors = acked.Load(), failed.Load()
	fmt.Fprintf(out, "load done: %d readings in %d messages over %.1f s (%.0f readings/s), acked %d, errors %d, probes %d\n",
		res.Readings, res.Messages, res.Seconds, res.Rate, res.Acked, res.Errors, res.Probes)
	if res.Errors > 0 {
		return res, fmt.Errorf("%d publishes failed", res.Errors)
	}
	return res, nil
}

func connectLoad(o loadOptions, i int) (mqtt.Client, error) {
	id := o.clientID + "-" + strconv.Itoa(i)
	if o.clients == 1 && o.username != "" {
		id = o.username // an authenticating broker wants client id = user name
	}
	opts := mqtt.NewClientOptions()
	for _, b := range brokerList(o.broker) {
		opts.AddBroker(b)
	}
	opts.SetClientID(id).
		SetUsername(o.username).SetPassword(o.password).SetCleanSession(true).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(10 * time.Second).SetOrderMatters(false)
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect to %s: %v", o.broker, tok.Error())
	}
	return c, nil
}
