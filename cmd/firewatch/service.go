package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/durable"
	"github.com/firewatch-iot/firewatch/ingest"
	gb26875server "github.com/firewatch-iot/firewatch/ingest/gb26875/server"
	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/bridge"
	"github.com/firewatch-iot/firewatch/internal/buildinfo"
	"github.com/firewatch-iot/firewatch/pipeline"
	"github.com/firewatch-iot/firewatch/registry"
)

// service is firewatch wired together: embedded broker (optional), MQTT
// source, hot-path pipeline, InfluxDB writer, alarm manager and HTTP server.
type service struct {
	cfg    *Config
	log    *slog.Logger
	ledger *devices.Ledger

	regStore *registry.Store // issue 18: the registry's store (registry.go)

	writer  *influx.Writer
	durable durable.Tracker // durability.go; nil in mode off
	alarms  *alarms.Manager
	broker  *mochi.Server
	live    *devices.Liveness
	source  pipeline.Source
	pipe    *pipeline.Pipeline
	httpLn  net.Listener
	httpSrv *http.Server

	brokerURL string
	gb        *gb26875server.Server // GB/T 26875.3 endpoint, nil when off (gb26875.go)
	// downlink publishes linkage commands (alarm_linkage.go).
	downlink *downlink
	nbiot    *bridge.Bridge // NB-IoT platform pushes (nbiot.go); nil: none configured
	vitals   *bridge.Vitals // NB-IoT detectors' last signal and battery (nbiot_forward.go)

	forward *cluster.Forwarder // cluster mode: NB-IoT and GB/T 26875.3 into the stream (cluster_forward.go)

	// Issue 18: the live registry every consumer follows, and the
	// embedded broker's authentication, which follows it too
	// (registry_live.go).
	registry   *devices.Live
	brokerAuth *broker.Auth
}

// newService loads the ledger and rules and opens every listener, so that
// a mistake is reported before anything runs.
func newService(cfg *Config, log *slog.Logger) (_ *service, err error) {
	s := &service{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.ledger, err = s.openRegistry(); err != nil { // registry.go: the store's registry, fed by the YAML ledger
		return nil, err
	}
	// Issue 18: the registry changes live from here on (registry_live.go);
	// s.ledger stays the snapshot loaded at start.
	s.registry = devices.NewLive(s.ledger)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())

	ic := cfg.Influx
	ic.SpoolDir, ic.Logger, ic.Registerer = cfg.influxSpoolDir(), log.With("component", "influx"), reg
	s.writer, err = influx.NewWriter(ic)
	if err != nil {
		return nil, err
	}
	tokens, err := alarms.ParseTokens(cfg.HTTP.Tokens)
	if err != nil {
		return nil, fmt.Errorf("http.tokens: %w", err)
	}
	if cfg.Alarms.LegacySignature {
		log.Warn("dispatch pushes also carry the v1 signature keyed with alarms.secret itself: once every receiver verifies v2 with its own key (firewatch push-key), set alarms.legacy_signature false and rotate alarms.secret (docs/dispatch.md)")
	}
	// The alarms section as the manager's Config (alarms/settings.go), with
	// the runtime parts added below.
	ac, err := cfg.Alarms.Config()
	if err != nil {
		return nil, err
	}
	centre, err := s.nbiotCentre() // nbiot_forward.go
	if err != nil {
		return nil, err
	}
	annotations := influx.NewEncoder(s.ledger)
	var annMu sync.Mutex
	var annBuf []byte
	rw, err := newResponderWiring(cfg) // issue 16: responder page and console (responder.go)
	if err != nil {
		return nil, err
	}
	ac.Publish, ac.Logger, ac.Registerer, ac.Tokens = s.publishCommand, log.With("component", "alarms"), reg, tokens
	ac.ResponderLink = rw.link
	ac.Centre = centre // nbiot_forward.go
	ac.OnTransition = func(a alarms.Alarm) {
		rw.notify(a)
		p, ok := s.alarmPoint(a)
		if !ok {
			return
		}
		annMu.Lock()
		defer annMu.Unlock()
		annBuf = annotations.AppendAlarm(annBuf[:0], p)
		s.writer.Write(annBuf)
	}
	ac.OnClosed = func(a alarms.Alarm) {
		p, ok := s.responsePoint(a)
		if !ok {
			return
		}
		annMu.Lock()
		defer annMu.Unlock()
		annBuf = annotations.AppendResponse(annBuf[:0], p)
		s.writer.Write(annBuf)
	}
	ac.Inspections = s.inspectionFigures // gb26875.go: the 查岗 考核 figures in the digests
	if s.alarms, err = alarms.NewManager(ac, s.ledger); err != nil {
		return nil, err
	}

	// The hot path, with liveness, edge faults, rule reloads and the
	// checkpoint of rule state (pipeline/).
	live := cfg.Liveness
	live.LostWithin = cfg.NBIoT.LostWithin // nbiot.go: GB/T 45839's lost-within bound
	// Acknowledged once durable (durability.go, issue 15).
	var lines pipeline.Lines = s.writer
	var durability pipeline.Durability
	if s.durable, err = s.newTracker(s.writer, reg); err != nil {
		return nil, err
	} else if s.durable != nil {
		lines, durability = s.durable, s.durable
	}
	var src *cluster.Source // issue 15: liveness of the devices this instance handles now
	var owns func(devices.Index) bool
	if cfg.Cluster.Enabled {
		owns = func(d devices.Index) bool { return src.Owns(d) }
	}
	if s.pipe, err = pipeline.New(pipeline.Options{
		Ledger: s.ledger, RulesFile: cfg.Rules, Lines: lines, Durability: durability, Alarms: alarmPort{s.alarms},
		Ingest: cfg.Ingest, Liveness: live, StateFile: cfg.stateFile(), StateInterval: cfg.State.Interval,
		Logger: log, Registerer: reg, Owns: owns,
	}); err != nil {
		return nil, err
	}
	s.live = s.pipe.Liveness()
	if err = s.startForwarder(reg, log); err != nil { // cluster_forward.go
		return nil, err
	}
	if s.gb, err = newGB26875(cfg, s.ledger, s.gbHandler(), reg, log); err != nil {
		return nil, err
	}

	s.brokerURL = cfg.MQTT.URL()
	if cfg.Cluster.Enabled {
		// Issue 15: uplink from the NATS JetStream stream, partitions shared
		// with the other instances (docs/cluster.md); linkage commands and
		// the console fan-out to the nodes' MQTT (cluster_downlink.go).
		s.brokerURL = "nats " + cfg.Cluster.URLs
		src = cluster.NewSource(cfg.Cluster, s.pipe, s.ledger, reg, log.With("component", "cluster"))
		// A message of a device not yet in the registry (added through
		// another instance a moment ago) waits for the registry to catch up.
		src.CatchUpRegistry(func(ctx context.Context) error { _, err := s.regStore.Sync(ctx); return err }, reg)
		s.source = src
		s.downlink = newClusterDownlink(cfg.Cluster)
		if s.brokerAuth, err = clusterAuth(cfg.Cluster, src, s.ledger, reg, log); err != nil { // cluster_auth.go
			return nil, err
		}
	} else if cfg.MQTT.Embedded() {
		// The embedded broker hands uplink to the pipeline in process,
		// before it acknowledges each message to the device (broker.InlineSource);
		// per-device credentials and topic ACLs from the ledger
		// (broker/settings.go).
		inline := broker.NewCheckedInlineSource(pipeline.CheckedHandler(s.pipe, pipeline.OriginBroker))
		if s.durable != nil {
			// Issue 19: the PUBACK once durable (durability.go), sent from
			// the tracker; the connection's reader does not wait for it.
			inline = broker.NewAckInlineSource(pipeline.CheckedAckHandler(s.pipe, pipeline.OriginBroker))
		}
		bc, err := cfg.MQTT.Config(s.ledger, reg, log)
		if err != nil {
			return nil, err
		}
		bc.Hooks = []mochi.Hook{inline}
		s.brokerAuth = bc.Auth // issue 18: follows the live registry
		if s.broker, err = broker.Start(bc); err != nil {
			return nil, err
		}
		s.downlink = newInlineDownlink(s.broker)
		s.source = inline
	} else {
		sc := cfg.MQTT.Source(log.With("component", "mqtt"))
		s.downlink = newDownlink(sc)
		// Acknowledged by the pipeline once durable (paho's manual acks).
		s.source = ingest.NewAckSource(sc, pipeline.AckHandler(s.pipe, pipeline.OriginMQTT))
	}

	if s.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	// At most max_connections open connections: more wait in the kernel's
	// backlog until a slot frees (the timeouts below free the slots slow
	// clients hold), rather than each costing a goroutine and buffers.
	s.httpLn = netutil.LimitListener(s.httpLn, cfg.HTTP.MaxConnections)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", s.healthz)
	if cfg.HTTP.Pprof {
		// The profiler shows internals and costs CPU: admins only, once
		// tokens are configured (without tokens the API is on loopback).
		guard := func(h http.HandlerFunc) http.HandlerFunc {
			if len(tokens) == 0 {
				return h
			}
			return s.alarms.Require(alarms.RoleAdmin, h)
		}
		mux.HandleFunc("/debug/pprof/", guard(pprof.Index))
		mux.HandleFunc("/debug/pprof/profile", guard(pprof.Profile))
		mux.HandleFunc("/debug/pprof/symbol", guard(pprof.Symbol))
		mux.HandleFunc("/debug/pprof/trace", guard(pprof.Trace))
	}
	mux.Handle("/api/v1/", s.alarms.Handler())
	(&devicesAPI{ledger: s.ledger, live: s.live, registry: s.registry}).register(mux, func(h http.HandlerFunc) http.HandlerFunc {
		return s.alarms.Require(alarms.RoleViewer, h)
	})
	s.mountRegistry(mux, s.registry, reg) // registry.go: the registry API, its commits made live through s.registry
	// Timeouts against slow clients (slowloris): headers within 10 s,
	// the whole request within read_timeout, the response within
	// write_timeout; idle keep-alive connections closed after idle_timeout.
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: min(10*time.Second, cfg.HTTP.ReadTimeout),
		ReadTimeout: cfg.HTTP.ReadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout, IdleTimeout: cfg.HTTP.IdleTimeout,
		MaxHeaderBytes: 64 << 10}
	if err := s.startNBIoT(mux, reg); err != nil { // nbiot.go
		return nil, err
	}
	// The API of the GB/T 26875.3 centre's duties (gb26875.go).
	s.mountGB26875(mux)
	if err := rw.register(s, mux, reg, log); err != nil { // issue 16
		return nil, err
	}

	// Issue 18: every consumer follows the live registry, in this order
	// (registry_live.go).
	s.followRegistry(func(l *devices.Ledger, remake bool) {
		annMu.Lock()
		defer annMu.Unlock()
		if remake {
			annotations = influx.NewEncoder(l)
		} else {
			annotations.Grow(l)
		}
	})
	return s, nil
}

// httpURL is the base URL of the HTTP server.
func (s *service) httpURL() string { return "http://" + s.httpLn.Addr().String() }

func (s *service) healthz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-s.source.Ready():
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Firewatch-Version", version())
		fmt.Fprintf(w, `{"status":"ok","version":%q,"devices":%d,"rules":%d}`+"\n", version(), len(s.registry.Load().Devices), s.pipe.RulesInForce())
	default:
		http.Error(w, `{"status":"starting: not yet subscribed to MQTT"}`, http.StatusServiceUnavailable)
	}
}

// run runs until ctx is done, then shuts down in reverse order of the data
// flow: stop taking messages (unacknowledged ones stay in the broker's
// session), commit every queued alarm event, flush InfluxDB, close the
// broker and the HTTP server.
func (s *service) run(ctx context.Context) error {
	defer s.close()
	errc := make(chan error, 4)
	start := func(name string, f func(context.Context) error) (context.CancelFunc, <-chan struct{}) {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := f(cctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		return cancel, done
	}
	stopWriter, writerDone := start("influx", s.writer.Run)
	stopDurable, durableDone := context.CancelFunc(func() {}), (<-chan struct{})(closedChan)
	if s.durable != nil {
		stopDurable, durableDone = start("durability", s.durable.Run)
	}
	stopAlarms, alarmsDone := start("alarms", s.alarms.Run)
	s.pipe.Restore(ctx, s.log)
	stopPipe, pipeDone := start("pipeline", s.pipe.Run)
	stopSource, sourceDone := start("mqtt", s.source.Run)
	stopGB, gbDone := s.startGB26875(start)
	stopFollow, followDone := start("registry follow", s.followRegistryStore) // issue 15: registry.go
	go func() {
		if err := s.httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	s.log.Info("firewatch started", "version", version(),
		"devices", len(s.ledger.Devices), "stations", len(s.ledger.Stations), "rules", s.pipe.RulesInForce(),
		"mqtt", s.brokerURL, "embedded_broker", s.broker != nil,
		"api", s.httpURL()+"/api/v1/alarms", "metrics", s.httpURL()+"/metrics", "influx", s.cfg.Influx.URL)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		s.log.Error("stopping after a failure", "err", err)
	}
	s.log.Info("shutting down")
	// Before the source: a handler waiting in Sync for a failing store
	// holds the source; the alarm manager's drain grace must start now.
	s.alarms.Stopping()
	stopFollow() // issue 15: no registry change applied while the consumers stop
	<-followDone
	stopGB() // gb26875.go
	<-gbDone
	s.stopNBIoT() // nbiot.go
	stopSource()
	<-sourceDone
	// The pipeline writes the checkpoint a last time once its sources
	// stopped.
	stopPipe()
	<-pipeDone
	stopAlarms()
	<-alarmsDone
	stopWriter()
	<-writerDone
	// After the writer: the log commits out what its shutdown wrote.
	stopDurable()
	<-durableDone
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.httpSrv.Shutdown(sctx)
	s.log.Info("stopped")
	return err
}

func (s *service) close() {
	s.stopNBIoT() // nbiot.go
	if s.gb != nil {
		s.gb.Close()
	}
	s.closeForwarder() // cluster_forward.go
	s.downlink.close()
	if s.broker != nil {
		s.broker.Close()
	}
	if s.alarms != nil {
		s.alarms.Close()
	}
	if s.httpLn != nil {
		s.httpLn.Close()
	}
	s.closeRegistry() // registry.go
}

// responsePoint turns a closed alarm into its response-time point (考核),
// at the time it was closed.
func (s *service) responsePoint(a alarms.Alarm) (influx.ResponsePoint, bool) {
	d, ok := s.registry.Load().LookupID(a.Device)
	if !ok || a.Response == nil {
		return influx.ResponsePoint{}, false
	}
	r := a.Response
	p := influx.ResponsePoint{
		Device: d.Index, Station: a.Station, Rule: a.Rule, Severity: a.Severity, Outcome: string(a.State),
		AlarmID: a.ID, RespondedInTime: r.RespondedInTime, ArrivedInTime: r.ArrivedInTime, Time: time.Now().UnixMilli(),
	}
	if a.ClosedAt != nil {
		p.Time = a.ClosedAt.UnixMilli()
	}
	for i, v := range [influx.NumResponseFields]*float64{&r.DeviceToRaised, r.Pushed, r.Received, r.Acknowledged,
		r.Dispatched, r.Arrived, r.Closed} {
		p.Seconds[i] = math.NaN()
		if v != nil {
			p.Seconds[i] = *v
		}
	}
	return p, true
}

// alarmPoint turns an alarm transition into its InfluxDB annotation, at the
// device time of the reading that raised it or the time it was cleared.
func (s *service) alarmPoint(a alarms.Alarm) (influx.AlarmPoint, bool) {
	d, ok := s.registry.Load().LookupID(a.Device)
	if !ok {
		return influx.AlarmPoint{}, false
	}
	p := influx.AlarmPoint{
		Device: d.Index, Rule: a.Rule, Severity: a.Severity, State: string(a.State),
		Value: a.Value, Threshold: a.Threshold, AlarmID: a.ID, Message: a.Message, Time: a.DeviceTime.UnixMilli(),
	}
	if a.ClearedAt != nil {
		p.Time = a.ClearedAt.UnixMilli()
		if a.ClearValue != nil {
			p.Value = *a.ClearValue
		}
	}
	return p, true
}
