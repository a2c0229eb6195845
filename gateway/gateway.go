package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/gateway/modbus"
	"github.com/firewatch-iot/firewatch/internal/buildinfo"
	"github.com/firewatch-iot/firewatch/internal/pahoconn"
	"github.com/firewatch-iot/firewatch/spool"
)

// Gateway polls its buses, spools readings and forwards them upstream.
type Gateway struct {
	cfg   Config
	maps  Maps
	log   *slog.Logger
	spool *spool.Spool
	seqs  *seqStore
	buses []*bus
	mqtt  paho.Client
	// commands records the linkage commands executed, against repeats.
	commands *commandLog

	connected atomic.Bool
	published atomic.Uint64 // readings acknowledged by the broker
	metricsLn net.Listener
	fwd       forwarderHealth
}

// bus is one serial port with its devices, owned by one goroutine.
type bus struct {
	cfg     BusConfig
	port    *port
	master  *modbus.Master
	devices []*device
	cmds    chan command
	health  busHealth
}

// device is the polling state of one slave.
type device struct {
	cfg     DeviceConfig
	m       *Map
	next    time.Time
	misses  int
	offline atomic.Bool
	events  map[int]bool // last state of each event point, by point index
	// blocks are the reads of a poll: the map's, split where the device
	// refused to read through unmapped registers (splitBlock).
	blocks []Block
	// missing are points whose register the device says does not exist:
	// sent as absent (null) instead of keeping the device offline.
	missing []int
}

// OpenPort opens a bus's serial port. A port that fails later (a USB
// adapter unplugged) is closed and reopened with it.
var OpenPort = func(b BusConfig) (io.ReadWriteCloser, error) {
	return modbus.OpenSerial(modbus.SerialConfig{
		Device: b.Port, Baud: b.Baud, DataBits: b.DataBits, Parity: b.Parity, StopBits: b.StopBits,
		ReadTimeout: 100 * time.Millisecond,
	})
}

// New validates cfg, opens the spool and the serial ports. Run starts work.
func New(cfg Config, maps Maps, log *slog.Logger) (_ *Gateway, err error) {
	if err := cfg.Validate(maps); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, maps: maps, log: log}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	g.spool, err = spool.Open(cfg.Spool.Dir, spool.Options{
		MaxBytes: cfg.Spool.MaxBytes, SyncEvery: cfg.Spool.SyncEvery, Keep: isEvent,
		FS: cfg.Spool.FS, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if g.seqs, err = openSeqs(filepath.Join(cfg.Spool.Dir, "seq")); err != nil {
		return nil, err
	}
	if g.commands, err = openCommandLog(filepath.Join(cfg.Spool.Dir, "commands")); err != nil {
		return nil, err
	}
	for _, bc := range cfg.Buses {
		p := &port{cfg: bc, log: log}
		if raw, err := OpenPort(bc); err != nil {
			// A missing adapter takes down its bus, not the gateway: the
			// port is opened again every reopenDelay, and the bus is
			// reported down in the status meanwhile.
			log.Error("serial port cannot be opened; retrying", "port", bc.Port, "err", err)
			p.openErr, p.last = err, time.Now()
		} else {
			p.p = raw
		}
		b := &bus{cfg: bc, port: p, cmds: make(chan command, 16),
			master: modbus.NewMaster(p, modbus.Config{Timeout: bc.Timeout, Retries: bc.Retries, Baud: bc.Baud})}
		b.health.ok, b.health.since = true, time.Now().UnixMilli()
		for _, dc := range bc.Devices {
			m := maps[dc.Model]
			b.devices = append(b.devices, &device{cfg: dc, m: m, events: map[int]bool{}, blocks: slices.Clone(m.Blocks)})
		}
		g.buses = append(g.buses, b)
	}
	if cfg.MetricsListen != "" {
		if g.metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return g, nil
}

// isEvent is the spool's keep policy: event records survive a full spool.
func isEvent(rec []byte) bool { return bytes.Contains(rec, []byte(`"event":`)) }

func (g *Gateway) topic(leaf string) string { return "fw/v1/up/gw/" + g.cfg.GatewayID + "/" + leaf }

// Run polls, forwards and serves commands until ctx ends, then shuts down
// in order: pollers, forwarder, MQTT (with an offline status), spool.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.close()
	if now := time.Now(); !clockSynced(now) {
		g.log.Warn("clock not set (no RTC, NTP not yet synchronised): readings go without ts and linkage commands are refused until it is",
			"now", now.UTC().Format(time.RFC3339), "floor", clockFloor.Format(time.RFC3339))
	}
	g.connectMQTT()
	var wg sync.WaitGroup
	if g.metricsLn != nil {
		wg.Add(1)
		go func() { defer wg.Done(); g.serveMetrics(ctx, g.metricsLn) }()
	}
	pollCtx, stopPolls := context.WithCancel(ctx)
	for _, b := range g.buses {
		wg.Add(1)
		go func() { defer wg.Done(); g.poll(pollCtx, b) }()
	}
	fwdCtx, stopFwd := context.WithCancel(context.Background())
	fwdDone := make(chan struct{})
	go func() { defer close(fwdDone); g.forward(fwdCtx) }()
	statusTick := time.NewTicker(g.cfg.StatusInterval)
	defer statusTick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-statusTick.C:
			g.publishStatus(true)
		}
	}
	stopPolls()
	wg.Wait()
	stopFwd()
	<-fwdDone
	if g.mqtt.IsConnectionOpen() {
		g.publishStatus(false)
	}
	g.mqtt.Disconnect(500)
	return nil
}

func (g *Gateway) close() {
	if g.metricsLn != nil {
		g.metricsLn.Close()
	}
	for _, b := range g.buses {
		b.port.Close()
	}
	if g.seqs != nil {
		if err := g.seqs.save(); err != nil {
			g.log.Error("save sequence numbers", "err", err)
		}
	}
	if g.spool != nil {
		if err := g.spool.Close(); err != nil {
			g.log.Error("close spool", "err", err)
		}
	}
}

func (g *Gateway) connectMQTT() {
	// The default client id is the gateway id, the user name firewatch's
	// embedded broker knows the gateway by: it admits a client only with
	// client id = user name.
	id := g.cfg.MQTT.ClientID
	if id == "" {
		id = g.cfg.GatewayID
	}
	// With several brokers paho tries them in order at every (re)connect
	// and stays on the first that answers: on the loss of a node the
	// gateway moves to the next, and the spool keeps every batch not yet
	// acknowledged, which is sent again there.
	o := paho.NewClientOptions()
	for _, b := range g.cfg.BrokerURLs() {
		o.AddBroker(b)
	}
	var trying atomic.Value // the broker of the latest connection attempt
	o.SetConnectionAttemptHandler(func(broker *url.URL, tc *tls.Config) *tls.Config {
		trying.Store(broker.Redacted())
		return tc
	})
	o.SetStore(pahoconn.NewStore()) // a batch in flight at a failover: see NewStore
	o.SetClientID(id).
		SetUsername(g.cfg.MQTT.Username).SetPassword(g.cfg.MQTT.Password).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(g.cfg.MQTT.ReconnectMax).
		SetConnectTimeout(10*time.Second).SetOrderMatters(false).
		SetWill(g.topic("status"), `{"online":false}`, 1, true).
		SetCustomOpenConnectionFn(pahoconn.Open) // buffered reads, coalesced writes (issue 19)
	o.SetOnConnectHandler(func(c paho.Client) {
		g.connected.Store(true)
		g.log.Info("uplink connected", "broker", trying.Load())
		for _, b := range g.buses {
			for _, d := range b.devices {
				b, d := b, d
				c.Subscribe("fw/v1/down/"+d.cfg.ID+"/command", 1, func(_ paho.Client, m paho.Message) {
					g.onCommand(b, d, m.Payload())
				})
			}
		}
		go g.publishStatus(true)
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		g.connected.Store(false)
		g.log.Warn("uplink lost; spooling", "err", err)
	})
	g.mqtt = paho.NewClient(o)
	g.mqtt.Connect() // retries in the background until it succeeds
}

// publishStatus publishes the gateway's status (retained).
func (g *Gateway) publishStatus(online bool) {
	offline := []string{}
	var st [5]uint64
	for _, b := range g.buses {
		for _, d := range b.devices {
			if d.offline.Load() {
				offline = append(offline, d.cfg.ID)
			}
		}
		s := b.master.Stats()
		st[0] += s.Timeouts.Load()
		st[1] += s.CRCErrors.Load()
		st[2] += s.BadFrames.Load()
		st[3] += s.Exceptions.Load()
		st[4] += s.Requests.Load()
	}
	p, _ := json.Marshal(map[string]any{
		"ts": time.Now().UnixMilli(), "online": online, "version": buildinfo.Version(),
		"spool_records": g.spool.Len(), "spool_bytes": g.spool.Bytes(), "spool_dropped": g.spool.Dropped(),
		"spool":           g.spoolHealth(),
		"offline_devices": offline,
		"bus":             map[string]uint64{"requests": st[4], "timeouts": st[0], "crc_errors": st[1], "bad_frames": st[2], "exceptions": st[3]},
		"buses":           g.busStatus(),
		"clock_synced":    clockSynced(time.Now()),
	})
	tok := g.mqtt.Publish(g.topic("status"), 1, true, p)
	tok.WaitTimeout(g.cfg.MQTT.PublishTimeout)
}

// poll runs one bus: earliest-due device first, commands before polls.
func (g *Gateway) poll(ctx context.Context, b *bus) {
	now := time.Now()
	for _, d := range b.devices {
		// Spread the first polls over one interval so that devices with
		// equal intervals do not all fall due at once.
		d.next = now.Add(time.Duration(rand.Int64N(int64(d.cfg.Interval)/4 + 1)))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var due *device
		for _, d := range b.devices {
			if due == nil || d.next.Before(due.next) {
				due = d
			}
		}
		if due == nil {
			select {
			case <-ctx.Done():
				return
			case c := <-b.cmds:
				g.execute(ctx, b, c)
			}
			continue
		}
		timer.Reset(time.Until(due.next))
		select {
		case <-ctx.Done():
			return
		case c := <-b.cmds:
			g.execute(ctx, b, c)
			continue
		case <-timer.C:
		}
		g.pollDevice(ctx, b, due)
		g.checkHealth(b)
		// Next slot on the device's own grid, with a little jitter; a
		// device late by more than an interval skips the missed slots
		// instead of bursting.
		jitter := time.Duration(rand.Int64N(int64(due.cfg.Interval)/20+1)) - due.cfg.Interval/40
		due.next = due.next.Add(due.cfg.Interval + jitter)
		if now := time.Now(); due.next.Before(now) {
			due.next = now.Add(due.cfg.Interval / 10)
		}
	}
}

// pollDevice reads every block of a device and spools its readings.
func (g *Gateway) pollDevice(ctx context.Context, b *bus, d *device) {
	ts := time.Now().UnixMilli()
	if !clockSynced(time.UnixMilli(ts)) {
		// Without a trustworthy clock the readings go without "ts":
		// firewatch stamps them on receipt, late rather than filed in
		// 1970 or rejected.
		ts = 0
	}
	values := make([]float64, len(d.m.Points))
	for _, pi := range d.missing {
		values[pi] = math.NaN()
	}
	for i := 0; i < len(d.blocks); i++ {
		blk := &d.blocks[i]
		data, err := b.master.Do(ctx, modbus.Request{Slave: byte(d.cfg.Slave), Function: blk.Function, Address: blk.Address, Value: blk.Count})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if g.splitBlock(d, i, err) {
				i-- // read the parts now
				continue
			}
			d.misses++
			if d.misses == d.cfg.OfflineAfter {
				d.offline.Store(true)
				g.log.Warn("device offline", "device", d.cfg.ID, "misses", d.misses, "err", err)
				go g.publishStatus(true)
			} else if d.misses < d.cfg.OfflineAfter {
				g.log.Debug("poll failed", "device", d.cfg.ID, "err", err)
			}
			return
		}
		for _, pi := range blk.Points {
			values[pi] = d.m.Points[pi].Decode(blk, data)
		}
	}
	if d.offline.Load() {
		g.log.Info("device back online", "device", d.cfg.ID, "misses", d.misses)
		d.offline.Store(false)
		go g.publishStatus(true)
	}
	d.misses = 0
	if err := g.spool.AppendBatch(g.records(d, ts, values)); err != nil {
		g.log.Error("spool append", "device", d.cfg.ID, "err", err)
	}
}

// splitBlock handles a device that refuses block i with "illegal data
// address" (exception 2) because the block reads through registers the
// device does not have: the block is split into gapless runs, a gapless
// run into single points, and a single point the device refuses is
// polled no more and sent as absent. It reports whether it split.
func (g *Gateway) splitBlock(d *device, i int, err error) bool {
	var ex *modbus.Exception
	if !errors.As(err, &ex) || ex.Code != 2 {
		return false
	}
	blk := d.blocks[i]
	var parts []Block
	if len(blk.Points) > 1 {
		sub := make([]Point, len(blk.Points))
		for k, pi := range blk.Points {
			sub[k] = d.m.Points[pi]
		}
		parts = blocks(sub, 0)
		if len(parts) == 1 {
			parts = parts[:0]
			for k := range sub {
				parts = append(parts, blocks(sub[k:k+1], 0)[0])
				parts[len(parts)-1].Points[0] = k
			}
		}
		for k := range parts {
			for j, si := range parts[k].Points {
				parts[k].Points[j] = blk.Points[si]
			}
		}
		g.log.Warn("device refuses to read through unmapped registers; reading the parts", "device", d.cfg.ID,
			"function", blk.Function, "address", blk.Address, "count", blk.Count, "reads", len(parts))
	} else {
		pi := blk.Points[0]
		d.missing = append(d.missing, pi)
		g.log.Warn("device has no such register; sending the point as absent", "device", d.cfg.ID,
			"metric", d.m.Points[pi].Metric.String(), "ch", d.m.Points[pi].Ch, "function", blk.Function, "address", blk.Address)
	}
	d.blocks = slices.Concat(d.blocks[:i:i], parts, d.blocks[i+1:])
	return true
}

// records turns one poll into v1 batch elements: one per channel for
// measurements, one per changed event.
func (g *Gateway) records(d *device, ts int64, values []float64) [][]byte {
	var out [][]byte
	var chans [17][]int // point indexes by channel
	for i := range d.m.Points {
		p := &d.m.Points[i]
		if p.Event() && !Absent(values[i]) {
			active := values[i] != 0
			prev, seen := d.events[i]
			if (!seen && active) || (seen && prev != active) {
				b := g.head(d, ts, p.Ch)
				b = append(b, `"event":"`...)
				b = append(b, p.Metric.String()...)
				b = append(b, `","active":`...)
				b = strconv.AppendBool(b, active)
				out = append(out, append(b, '}'))
			}
			d.events[i] = active
			continue
		}
		chans[p.Ch] = append(chans[p.Ch], i)
	}
	for ch, idx := range chans {
		if len(idx) == 0 {
			continue
		}
		b := g.head(d, ts, ch)
		b = append(b, `"m":{`...)
		for k, i := range idx {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, d.m.Points[i].Metric.String()...)
			b = append(b, `":`...)
			b = appendValue(b, values[i], d.m.Points[i].Scale)
		}
		out = append(out, append(b, "}}"...))
	}
	return out
}

func (g *Gateway) head(d *device, ts int64, ch int) []byte {
	b := make([]byte, 0, 160)
	b = append(b, `{"dev":"`...)
	b = append(b, d.cfg.ID...)
	b = append(b, '"')
	if ts > 0 {
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, ts, 10)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, uint64(g.seqs.next(d.cfg.ID)), 10)
	if ch > 0 {
		b = append(b, `,"ch":`...)
		b = strconv.AppendInt(b, int64(ch), 10)
	}
	return append(b, ',')
}

// appendValue formats v to the resolution of its scale, so that 415 × 0.1
// is sent as 41.5, not 41.50000000000001. An absent value (a sentinel, a
// float NaN) is null: firewatch raises a sensor fault for that metric and
// keeps the others of the element.
func appendValue(b []byte, v, scale float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	d := 0
	for s := math.Abs(scale); s < 1 && d < 9; s *= 10 {
		d++
	}
	p := math.Pow10(d + 6) // float32 values keep their own digits
	return strconv.AppendFloat(b, math.Round(v*p)/p, 'g', -1, 64)
}

// forward sends spooled readings as batches, committing each batch only
// after the broker's PUBACK. It never gives up: a spool error (disk full,
// I/O error, a failed ack write) is counted, logged with a rate limit and
// retried with backoff until ctx ends.
func (g *Gateway) forward(ctx context.Context) {
	topic := g.topic("batch")
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var payload []byte
	fails := 0
	// pause waits out the backoff after a spool error; false when ctx ends.
	pause := func(what string, err error) bool {
		fails++
		g.fwd.errors.Add(1)
		d := forwardBackoff(fails)
		if now := time.Now(); fails == 1 || now.Sub(g.fwd.logged) >= forwardLogEvery {
			g.fwd.logged = now
			g.log.Error("forwarder: "+what+" failed; retrying", "err", err, "attempts", fails, "retry_in", d.Round(time.Millisecond))
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		if g.spool.Len() == 0 || !g.mqtt.IsConnectionOpen() {
			select {
			case <-ctx.Done():
				return
			case <-g.spool.Ready():
			case <-tick.C:
			}
			continue
		}
		recs, err := g.spool.Peek(g.cfg.MQTT.BatchRecords, 60<<10)
		if err != nil {
			if !pause("spool read", err) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			continue
		}
		payload = append(payload[:0], `{"readings":[`...)
		for i, r := range recs {
			if i > 0 {
				payload = append(payload, ',')
			}
			payload = append(payload, r...)
		}
		payload = append(payload, "]}"...)
		// paho keeps the slice until the broker acknowledges it, also
		// across a timeout and a reconnect: give it its own copy, since
		// payload is rebuilt for the next batch.
		tok := g.mqtt.Publish(topic, 1, false, bytes.Clone(payload))
		if !tok.WaitTimeout(g.cfg.MQTT.PublishTimeout) || tok.Error() != nil {
			g.log.Warn("batch not acknowledged; will resend", "records", len(recs), "err", tok.Error())
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			continue
		}
		g.published.Add(uint64(len(recs)))
		if err := g.spool.Commit(len(recs)); err != nil {
			// The broker has the batch. The spool has removed it in
			// memory unless it is closing; after a restart it may be
			// sent again, which firewatch de-duplicates by sequence
			// number.
			if !pause("spool commit", err) {
				return
			}
			continue
		}
		if fails > 0 {
			g.log.Info("forwarder: spool works again", "failed_attempts", fails)
			fails = 0
		}
	}
}

// Published returns how many readings the broker has acknowledged.
func (g *Gateway) Published() uint64 { return g.published.Load() }

// Spooled returns how many readings wait in the spool.
func (g *Gateway) Spooled() int { return g.spool.Len() }

// Connected reports whether the uplink is up.
func (g *Gateway) Connected() bool { return g.connected.Load() && g.mqtt.IsConnectionOpen() }

// Offline reports whether device id is offline.
func (g *Gateway) Offline(id string) bool {
	for _, b := range g.buses {
		for _, d := range b.devices {
			if d.cfg.ID == id {
				return d.offline.Load()
			}
		}
	}
	return false
}

// BusStats returns the frame counters of bus i.
func (g *Gateway) BusStats(i int) *modbus.Stats { return g.buses[i].master.Stats() }

// seqStore hands out per-device sequence numbers that never repeat, even
// after a power cut: it persists a ceiling seqBlock ahead of what it has
// handed out, and starts from the ceiling after an unclean stop (a gap in
// the numbers, never a repeat). A clean stop saves the exact values.
type seqStore struct {
	path    string
	mu      sync.Mutex
	cur     map[string]uint32
	ceiling map[string]uint32
}

const seqBlock = 1000

func openSeqs(path string) (*seqStore, error) {
	s := &seqStore{path: path, cur: map[string]uint32{}, ceiling: map[string]uint32{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sequence numbers: %w", err)
	}
	if err := json.Unmarshal(b, &s.cur); err != nil {
		return nil, fmt.Errorf("sequence numbers %s: %w", path, err)
	}
	for k, v := range s.cur {
		s.ceiling[k] = v
	}
	return s, nil
}

func (s *seqStore) next(dev string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.cur[dev]
	if n >= s.ceiling[dev] {
		s.ceiling[dev] = n + seqBlock
		saved := map[string]uint32{}
		for k, v := range s.ceiling {
			saved[k] = v
		}
		if err := writeFileSync(s.path, saved); err != nil {
			// Keep going: a repeat after a power cut is the worst case.
			slog.Default().Error("save sequence numbers", "err", err)
		}
	}
	s.cur[dev] = n + 1
	return n
}

func (s *seqStore) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeFileSync(s.path, s.cur)
}

func writeFileSync(path string, v any) error {
	b, _ := json.Marshal(v)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return os.Rename(tmp, path)
}
