package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/rules"
)

// Options are what New wires together.
type Options struct {
	Ledger *devices.Ledger
	// RulesFile is the rule file, reloaded on SIGHUP and when it changes;
	// empty: the built-in defaults.
	RulesFile string
	// Lines takes the line protocol (the InfluxDB writer).
	Lines Lines
	// Durability, if set, tells when the lines written to Lines are
	// durable, and Take acknowledges messages only then (package durable:
	// Lines and Durability are then the same tracker). nil: once they are
	// in Lines.
	Durability Durability
	// Alarms takes the events and the alarm manager's topics.
	Alarms Alarms
	// Ingest and Liveness are the configuration's sections of those names.
	Ingest   IngestConfig
	Liveness LivenessConfig
	// StateFile is the resolved state.file ("" for no checkpoint), written
	// every StateInterval.
	StateFile     string
	StateInterval time.Duration
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// Owns, if not nil, says which devices this instance handles now
	// (cluster mode, ownership.go): liveness raises and clears the offline
	// alarms of those only.
	Owns func(devices.Index) bool
}

// New loads the rules, restores the checkpoint of the last run if there is
// one, and returns the pipeline with its liveness tracking, edge faults
// and rule reloader. Messages may be handed to it at once; Run starts its
// clocks and background work.
func New(o Options) (*Pipeline, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	set, err := LoadRules(o.RulesFile)
	if err != nil {
		return nil, err
	}
	eng, err := rules.NewEngine(set, o.Ledger)
	if err != nil {
		return nil, err
	}
	// Liveness: offline (离线) alarms through the alarm path (liveness.go).
	// Edge faults (edge_faults.go): a gateway's dead bus, a sensor not
	// connected; they hold back the offline alarms of a dead bus's devices.
	edge := newEdgeFaults(o.Ledger, o.Alarms, newLivenessAlarms(o.Ledger, o.Alarms), log.With("component", "edge"))
	// Rule state and liveness of the last run (checkpoint.go).
	start := time.Now().UnixMilli()
	stateLog := log.With("component", "state")
	restored := readCheckpoint(o.StateFile, o.Ledger, eng, start, stateLog)
	var sink devices.LivenessSink = edge
	if o.Owns != nil {
		sink = ownedSink{next: edge, owns: o.Owns} // ownership.go
	}
	live, err := newLiveness(o.Liveness, o.Ledger, sink, start, restored)
	if err != nil {
		return nil, err
	}
	edge.live = live
	stats := ingest.NewStats(o.Registerer, log.With("component", "ingest"))
	p := newPipeline(o.Ledger, eng, o.Lines, o.Alarms, stats, o.Registerer)
	p.reload = newRulesReloader(o.RulesFile, o.Ledger, p, log.With("component", "rules"), o.Registerer)
	p.durable = o.Durability
	p.live, p.edge, p.alarms, p.log, p.tick = live, edge, o.Alarms, log.With("component", "alarms"), o.Liveness.Tick
	if o.StateFile != "" {
		p.ckpt = &checkpoint{path: o.StateFile, every: o.StateInterval, ledger: o.Ledger, pipe: p, live: live, log: stateLog, wait: checkpointWait}
	}
	p.dec.MaxFuture, p.dec.MaxAge, p.dec.MinTime = o.Ingest.MaxFuture, o.Ingest.MaxAge, ingest.DefaultMinTime
	return p, nil
}

// Liveness is the pipeline's liveness tracker (for the devices API).
func (p *Pipeline) Liveness() *devices.Liveness { return p.live }

// RulesInForce is the number of rules evaluated now.
func (p *Pipeline) RulesInForce() int { return int(p.reload.inForce.Load()) }

// Restore marks the offline devices and sensor faults the alarm store
// still holds open from the last run, so that they clear when the device
// or sensor reads again. Call it once the alarm manager runs and before
// the first message; a failure leaves those alarms to be cleared by hand.
func (p *Pipeline) Restore(ctx context.Context, log *slog.Logger) {
	if n, err := restoreOffline(ctx, p.alarms, p.ledger, p.live); err != nil {
		log.Warn("offline alarms of the last run not restored: they clear by hand", "err", err)
	} else if n > 0 {
		log.Info("devices still offline from the last run", "devices", n)
	}
	if n, err := restoreSensorFaults(ctx, p.alarms, p.ledger, p.edge); err != nil {
		log.Warn("sensor faults of the last run not restored: they clear by hand", "err", err)
	} else if n > 0 {
		log.Info("sensor faults still open from the last run", "faults", n)
	}
}

// Run runs the pipeline's background work until ctx is done: the receive
// clock, the liveness ticks, the rule reloader and the checkpoint. Stop
// the sources first: once they stopped, Run writes the checkpoint a last
// time before it returns.
func (p *Pipeline) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Go(func() { f(ctx) })
	}
	run(p.clock.run)
	run(func(ctx context.Context) error { return runLiveness(ctx, p.live, p.tick) })
	run(p.reload.run)
	if p.ckpt != nil {
		run(p.ckpt.run)
	}
	wg.Wait()
	if p.ckpt != nil {
		if err := p.ckpt.write(); err != nil {
			p.ckpt.log.Error("state checkpoint not written at shutdown: rule state and liveness restart from the last one", "file", p.ckpt.path, "err", err)
		}
	}
	return nil
}
