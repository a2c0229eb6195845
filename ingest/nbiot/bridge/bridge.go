package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// HandleFunc is the pipeline's entry: one message of the MQTT contract
// (docs/mqtt.md) on fw/v1/up/{device}/{telemetry|event|status}. It returns
// nil only once the message's readings are queued for InfluxDB and the
// alarm events it caused are committed, so that the platform may be told
// 200; an error makes the bridge answer 503 and the platform retry.
type HandleFunc func(topic string, payload []byte) error

// ErrStopping is returned by Submit once Stop has begun: the platform is
// answered 503 and sends the push again to the next run.
var ErrStopping = errors.New("nbiot: firewatch is stopping")

// Options are what the bridge needs from the service.
type Options struct {
	Ledger *devices.Ledger
	Handle HandleFunc
	// Registerer takes the bridge's metrics; nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Vitals keeps the detectors' last signal and battery (vitals.go);
	// nil: the bridge's own.
	Vitals *Vitals
}

// Bridge turns platform reports into pipeline messages. Submit is safe for
// concurrent use (each platform's handler calls it from request goroutines).
type Bridge struct {
	cfg     Config
	ledger  *devices.Ledger
	index   *devices.NBIoTIndex
	live    atomic.Pointer[liveIndex] // registry.go: replaces ledger and index
	codecs  nbiot.Codecs
	handle  HandleFunc
	log     *slog.Logger
	pending *pendingSet
	met     metrics

	// inflight is held (read) by every Submit; Stop takes it (write) to
	// wait for them.
	inflight sync.RWMutex
	stopping atomic.Bool

	srv *server // own listener (nbiot.listen), or nil

	vitals *Vitals // last signal and battery per detector (vitals.go)
}

type metrics struct {
	requests *prometheus.CounterVec // platform, outcome (nbiot.CountFunc)
	reports  *prometheus.CounterVec // platform, result
	pending  prometheus.Gauge
}

// Results of a report, the label of firewatch_nbiot_reports_total.
const (
	resultDelivered = "delivered"      // handed to the pipeline
	resultUnknown   = "unknown_device" // not in the ledger: a pending entry
	resultInstall   = "install"        // GB/T 45839 Install_info: a pending entry
	resultNoCodec   = "no_codec"       // payload of a device without a product codec: taken as a heartbeat
	resultCodec     = "codec_error"    // a field did not fit the codec (others kept)
	resultKind      = "kind_mismatch"  // a value of another device kind (dropped)
	resultOffline   = "offline"        // the platform says offline: left to liveness
	resultCommand   = "command"        // a command result: recorded in the count only
	resultDisabled  = "disabled"       // GB/T 45839 status 4 (屏蔽)
	resultFull      = "pending_full"   // pending entries at their bound: dropped
)

// CheckLedger loads the product codecs (shipped and nbiot.codecs) and
// checks the ledger's NB-IoT bindings against them: every name bound to one
// device, every bound product known and of the device's kind. Errors name
// the ledger's file and line.
func CheckLedger(cfg Config, l *devices.Ledger) (nbiot.Codecs, *devices.NBIoTIndex, error) {
	codecs, err := nbiot.ShippedCodecs()
	if err != nil {
		return nil, nil, err
	}
	if err := codecs.LoadCodecs(List(cfg.Codecs)); err != nil {
		return nil, nil, fmt.Errorf("nbiot.codecs: %w", err)
	}
	idx, err := l.NBIoTIndex()
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.NBIoT == nil || d.NBIoT.Product == "" {
			continue
		}
		c := codecs[d.NBIoT.Product]
		switch {
		case c == nil:
			errs = append(errs, fmt.Errorf("%s:%d: device %q: nbiot product %q has no codec (shipped: ingest/nbiot/maps; more with nbiot.codecs)", l.File, d.Line, d.ID, d.NBIoT.Product))
		case c.Kind != d.Kind:
			errs = append(errs, fmt.Errorf("%s:%d: device %q of kind %s: nbiot product %q is a %s codec", l.File, d.Line, d.ID, d.Kind, c.Product, c.Kind))
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return codecs, idx, nil
}

// New checks the ledger's NB-IoT bindings (CheckLedger) and returns the
// bridge.
func New(cfg Config, opt Options) (*Bridge, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	codecs, idx, err := CheckLedger(cfg, opt.Ledger)
	if err != nil {
		return nil, err
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{cfg: cfg, ledger: opt.Ledger, index: idx, codecs: codecs, handle: opt.Handle, log: log}
	if b.vitals = opt.Vitals; b.vitals == nil { // vitals.go
		b.vitals = NewVitals(opt.Ledger)
	}
	b.met = metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_nbiot_requests_total",
			Help: "NB-IoT platform pushes by platform and outcome: accepted (per report), duplicate (a retry already taken), verified (OneNET URL check), rate_limited, or why it was refused (token, tenant, product, signature, decrypt, malformed, too_large, submit, ...).",
		}, []string{"platform", "outcome"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_nbiot_reports_total",
			Help: "NB-IoT reports taken, by platform and what became of them: delivered, unknown_device, install, no_codec, codec_error, kind_mismatch, offline, command, disabled, pending_full.",
		}, []string{"platform", "result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewatch_nbiot_pending_devices",
			Help: "Pending entries: devices reporting through a platform but not in the ledger, and GB/T 45839 Install_info, waiting for an administrator to bind them.",
		}),
	}
	if opt.Registerer != nil {
		opt.Registerer.MustRegister(b.met.requests, b.met.reports, b.met.pending)
	}
	if b.pending, err = newPendingSet(cfg.Pending, cfg.PendingFile, idx); err != nil {
		return nil, err
	}
	b.met.pending.Set(float64(b.pending.len()))
	return b, nil
}

// Count is the handlers' nbiot.CountFunc.
func (b *Bridge) Count(p nbiot.Platform, outcome string) {
	b.met.requests.WithLabelValues(p.String(), outcome).Inc()
}

func (b *Bridge) result(p nbiot.Platform, result string) {
	b.met.reports.WithLabelValues(p.String(), result).Inc()
}

// Submit is the handlers' nbiot.SubmitFunc: it returns nil once every
// report is taken (handed to the pipeline and committed, or kept as a
// pending entry), an error when the platform should retry.
func (b *Bridge) Submit(ctx context.Context, reports []nbiot.Report) error {
	b.inflight.RLock()
	defer b.inflight.RUnlock()
	if b.stopping.Load() {
		return ErrStopping
	}
	var msg []byte
	for i := range reports {
		r := &reports[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.Type == nbiot.TypeInstall {
			b.keepPending(r)
			continue
		}
		l, index := b.registry()
		di, ok := index.Find(r.Device.IMEI, r.Device.PlatformID, r.Device.Serial)
		if ok && l.Device(di).Removed {
			ok = false
		}
		if !ok {
			b.keepPending(r)
			continue
		}
		d := l.Device(di)
		switch r.Type {
		case nbiot.TypeCommand:
			b.result(r.Platform, resultCommand)
			continue
		case nbiot.TypePresence:
			if r.Presence != nbiot.Online {
				// The platform's view of a sleeping NB-IoT module says
				// little; firewatch's own liveness decides (docs/nbiot.md).
				b.result(r.Platform, resultOffline)
				continue
			}
		case nbiot.TypeStatus:
			if r.Disabled {
				b.result(r.Platform, resultDisabled)
			}
			if r.SignalSet && r.Signal < 0 && r.Signal >= -150 {
				// A negative signalStrength can only be dBm (the standard
				// names no unit; a CSQ or a level is positive).
				if m, ok := devices.MetricByName(d.Kind, "rssi_dbm"); ok {
					r.Values = append(r.Values, nbiot.Value{Metric: m, Value: float64(r.Signal)})
				}
			}
		}
		if len(r.Values) == 0 && (len(r.Payload) > 0 || len(r.JSON) > 0) {
			var c *nbiot.Codec
			if d.NBIoT != nil {
				c = b.codecs[d.NBIoT.Product]
			}
			if c == nil {
				b.result(r.Platform, resultNoCodec)
			} else if err := c.Apply(r); err != nil {
				b.result(r.Platform, resultCodec)
				b.log.Debug("nbiot payload does not fit its codec", "device", d.ID, "product", c.Product, "err", err)
			}
		}
		b.vitals.note(d, r) // vitals.go: before the alarm it may raise is reported
		var err error
		if msg, err = b.deliver(d, r, msg); err != nil {
			return err
		}
		b.result(r.Platform, resultDelivered)
	}
	if b.stopping.Load() {
		// Stop began while the pipeline waited for the alarm store: its
		// commit may have been given up. A retry is safe, a 200 may not be.
		return ErrStopping
	}
	return nil
}

// deliver hands r's values to the pipeline as MQTT-contract messages on
// d's own topics: plain metrics by channel as telemetry, each event as an
// event message, and a bare status (a heartbeat) when there is neither.
func (b *Bridge) deliver(d *devices.Device, r *nbiot.Report, buf []byte) ([]byte, error) {
	prefix := "fw/v1/up/" + d.ID + "/"
	sent := false
	// Plain metrics, one message per channel (usually one: channel 0).
	for {
		ch, first := -1, true
		buf = b.head(buf[:0], r)
		for i := range r.Values {
			v := &r.Values[i]
			info := v.Metric.Info()
			if info.Event || v.Ch < 0 {
				continue
			}
			if info.Kind != d.Kind {
				b.result(r.Platform, resultKind)
				v.Ch = -1 // counted once
				continue
			}
			if ch == -1 {
				ch = v.Ch
			}
			if v.Ch != ch {
				continue
			}
			if first {
				if ch > 0 {
					buf = append(buf, `"ch":`...)
					buf = strconv.AppendInt(buf, int64(ch), 10)
					buf = append(buf, ',')
				}
				buf = append(buf, `"m":{`...)
				first = false
			} else {
				buf = append(buf, ',')
			}
			buf = strconv.AppendQuote(buf, info.Name)
			buf = append(buf, ':')
			if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
				buf = append(buf, "null"...)
			} else {
				buf = strconv.AppendFloat(buf, v.Value, 'g', -1, 64)
			}
			v.Ch = -1 // done
		}
		if ch == -1 {
			break
		}
		buf = append(buf, "}}"...)
		if err := b.handle(prefix+"telemetry", buf); err != nil {
			return buf, err
		}
		sent = true
	}
	for i := range r.Values {
		v := &r.Values[i]
		info := v.Metric.Info()
		if !info.Event || v.Ch < 0 {
			continue
		}
		if info.Kind != d.Kind {
			b.result(r.Platform, resultKind)
			continue
		}
		buf = b.head(buf[:0], r)
		if v.Ch > 0 {
			buf = append(buf, `"ch":`...)
			buf = strconv.AppendInt(buf, int64(v.Ch), 10)
			buf = append(buf, ',')
		}
		buf = append(buf, `"event":`...)
		buf = strconv.AppendQuote(buf, info.Name)
		if v.Value == 0 {
			buf = append(buf, `,"active":false`...)
		}
		buf = append(buf, '}')
		if err := b.handle(prefix+"event", buf); err != nil {
			return buf, err
		}
		sent = true
	}
	if !sent {
		buf = b.head(buf[:0], r)
		if buf[len(buf)-1] == ',' {
			buf = buf[:len(buf)-1]
		}
		buf = append(buf, '}')
		if err := b.handle(prefix+"status", buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// head opens a message object with the report's time, leaving a comma
// after it for the next key.
func (b *Bridge) head(buf []byte, r *nbiot.Report) []byte {
	buf = append(buf, '{')
	if !r.Time.IsZero() {
		buf = append(buf, `"ts":`...)
		buf = strconv.AppendInt(buf, r.Time.UnixMilli(), 10)
		buf = append(buf, ',')
	}
	return buf
}

func (b *Bridge) keepPending(r *nbiot.Report) {
	res := resultUnknown
	if r.Type == nbiot.TypeInstall {
		res = resultInstall
	}
	switch err := b.pending.add(r, time.Now()); {
	case errors.Is(err, errPendingFull):
		res = resultFull
	case err != nil:
		b.log.Warn("pending NB-IoT entries not saved", "file", b.cfg.PendingFile, "err", err)
	}
	b.result(r.Platform, res)
	b.met.pending.Set(float64(b.pending.len()))
}

// Pending returns the pending entries, oldest first.
func (b *Bridge) Pending() []Pending { return b.pending.list() }

// Stop refuses new pushes (503, so that the platforms retry later), waits
// for those being handled, and closes the bridge's own listener. Call it
// before the alarm manager stops.
func (b *Bridge) Stop(ctx context.Context) {
	b.stopping.Store(true)
	if b.srv != nil {
		b.srv.stop(ctx)
	}
	b.inflight.Lock()
	b.inflight.Unlock() //nolint:staticcheck // a barrier: every Submit begun before Stop has returned
}
