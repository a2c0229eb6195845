package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

// nbiotOptions drive runNBIoT; cmdNBIoT fills them from flags, tests directly.
type nbiotOptions struct {
	url                    string // firewatch's base URL (the /nbiot endpoints)
	ctwingToken, ctwingTen string
	ctwingProduct          string
	onenetToken, onenetAES string
	every                  time.Duration // report period of each detector
	fire                   string        // village code (or prefix): its detectors report smoke
	delay                  time.Duration // before the fire
	backoff                []time.Duration
	once                   bool // one round of reports (and the fire at once), then stop
	client                 *http.Client
}

// platformBackoff is OneNET's documented retry schedule, shortened to its
// first steps: a demo should not wait an hour.
var platformBackoff = []time.Duration{5 * time.Second, 10 * time.Second, 30 * time.Second, 60 * time.Second}

func cmdNBIoT(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("nbiot",
		"Emulate the NB-IoT platforms of the ledger's NB-IoT smoke detectors (devices with an\n"+
			"nbiot: binding; 'firesim ledger -nbiot N' writes some): each detector reports its thing\n"+
			"model every -every, through CTWing (bound by imei: a dataReport push) or OneNET (bound by\n"+
			"platform_id: a signed push of the Alarm_Status data point, AES with -onenet-aes-key), to\n"+
			"firewatch's /nbiot endpoints (docs/nbiot.md). A push not answered 200 is retried as the\n"+
			"platforms do. With -fire, the detectors of that village report smoke after -scenario-delay.",
		"  firesim nbiot -ledger var/ledger.yaml -url http://127.0.0.1:9090 -ctwing-token … -onenet-token … -fire 450204101201\n",
		stderr)
	ledgerPath := fs.String("ledger", "var/ledger.yaml", "ledger file")
	var o nbiotOptions
	fs.StringVar(&o.url, "url", "http://127.0.0.1:9090", "base URL of firewatch's NB-IoT endpoints (nbiot.listen, else http.listen)")
	fs.StringVar(&o.ctwingToken, "ctwing-token", os.Getenv("FIREWATCH_NBIOT_CTWING_TOKEN"), "CTWing subscription path token (nbiot.ctwing.token)")
	fs.StringVar(&o.ctwingTen, "ctwing-tenant", "2000033629", "CTWing tenantId (one of nbiot.ctwing.tenants)")
	fs.StringVar(&o.ctwingProduct, "ctwing-product", "15298770", "CTWing productId (one of nbiot.ctwing.products)")
	fs.StringVar(&o.onenetToken, "onenet-token", os.Getenv("FIREWATCH_NBIOT_ONENET_TOKEN"), "OneNET push token (nbiot.onenet.token)")
	fs.StringVar(&o.onenetAES, "onenet-aes-key", os.Getenv("FIREWATCH_NBIOT_ONENET_AES_KEY"), "OneNET secure-mode AES key; empty: plain mode")
	fs.DurationVar(&o.every, "every", time.Minute, "report period of each detector")
	fs.StringVar(&o.fire, "fire", "", "village code (or prefix) whose NB-IoT detectors report smoke")
	fs.DurationVar(&o.delay, "scenario-delay", 20*time.Second, "delay before the fire")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.every <= 0 || o.delay < 0 {
		fmt.Fprintln(stderr, "firesim nbiot: -every must be positive, -scenario-delay not negative")
		return errUsage
	}
	l, err := devices.LoadLedger(*ledgerPath)
	if err != nil {
		return err
	}
	o.backoff = platformBackoff
	return runNBIoT(ctx, l, o, stdout)
}

// runNBIoT reports for every NB-IoT detector of l until ctx ends (or one
// round, with o.once).
func runNBIoT(ctx context.Context, l *devices.Ledger, o nbiotOptions, out io.Writer) error {
	type det struct {
		d     *devices.Device
		state sim.SmokeState
		fire  bool
	}
	var dets []*det
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.NBIoT == nil || d.Kind != devices.KindSmoke {
			continue
		}
		if (d.NBIoT.IMEI != "" && o.ctwingToken == "") || (d.NBIoT.IMEI == "" && o.onenetToken == "") {
			continue // its platform is not configured
		}
		dets = append(dets, &det{d: d, state: sim.SmokeState{Battery: 70 + i%30, RSRP: -80 - i%25},
			fire: o.fire != "" && strings.HasPrefix(string(d.Grid), o.fire)})
	}
	if len(dets) == 0 {
		return errors.New("no NB-IoT smoke detector of a configured platform in the ledger (firesim ledger -nbiot N; set -ctwing-token / -onenet-token)")
	}
	if o.client == nil {
		o.client = &http.Client{Timeout: 10 * time.Second}
	}
	base := strings.TrimRight(o.url, "/")
	fmt.Fprintf(out, "NB-IoT: %d detectors report every %v through CTWing/OneNET to %s/nbiot\n", len(dets), o.every, base)
	var wg sync.WaitGroup
	defer wg.Wait()
	seq := int64(0)
	report := func(dt *det, now time.Time) {
		seq++
		var url string
		var body []byte
		var err error
		if dt.d.NBIoT.IMEI != "" {
			url = base + "/nbiot/ctwing/" + o.ctwingToken
			body = sim.CTWingDataReport(o.ctwingTen, o.ctwingProduct, o.ctwingProduct+dt.d.NBIoT.IMEI, dt.d.NBIoT.IMEI, seq, now, dt.state)
		} else {
			var id int64
			fmt.Sscan(dt.d.NBIoT.PlatformID, &id)
			url = base + "/nbiot/onenet"
			body, err = sim.OneNETPush(o.onenetToken, o.onenetAES, sim.OneNETDataPoint(id, "Alarm_Status", now, dt.state.AlarmStatus), now)
			if err != nil {
				fmt.Fprintf(out, "NB-IoT %s: %v\n", dt.d.ID, err)
				return
			}
		}
		wg.Add(1)
		go func() { // a platform pushes each report on its own
			defer wg.Done()
			if n, err := sim.Push(ctx, o.client, url, body, o.backoff); err != nil && ctx.Err() == nil {
				fmt.Fprintf(out, "NB-IoT %s: push failed after %d attempts: %v\n", dt.d.ID, n, err)
			}
		}()
	}
	if o.once {
		now := time.Now()
		for _, dt := range dets {
			if dt.fire {
				dt.state.AlarmStatus = 1
			}
			report(dt, now)
		}
		return nil
	}
	start := time.Now()
	fired := o.fire == ""
	// Spread the detectors over the period.
	next := make([]time.Time, len(dets))
	for i := range dets {
		next[i] = start.Add(o.every * time.Duration(i) / time.Duration(len(dets)))
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		if !fired && now.Sub(start) >= o.delay {
			fired = true
			n := 0
			for _, dt := range dets {
				if dt.fire {
					dt.state.AlarmStatus = 1
					report(dt, now)
					n++
				}
			}
			fmt.Fprintf(out, "%s NB-IoT fire: %d detectors of %s report smoke\n", now.Format(time.TimeOnly), n, o.fire)
		}
		for i, dt := range dets {
			if !now.Before(next[i]) {
				report(dt, now)
				next[i] = next[i].Add(o.every)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
