package pipeline

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// reloadPoll is how often the rule file is checked for changes.
const reloadPoll = 2 * time.Second

// rulesReloader reloads the rule file on SIGHUP and when the file changes.
// A valid file is compiled off the hot path and handed to the pipeline,
// which adopts the old engine's state between two messages; an invalid one
// is logged with every problem and the running rules stay.
type rulesReloader struct {
	path    string // "" for the built-in defaults
	ledger  *devices.Ledger
	pipe    *Pipeline
	log     *slog.Logger
	results *prometheus.CounterVec
	// inForce is the number of rules the pipeline evaluates now.
	inForce atomic.Int64
	// loaded identifies the version of the file in force, taken when the
	// reloader is made, right after the rules were loaded: a change before
	// run starts is a change too.
	loaded stamp
}

func newRulesReloader(path string, l *devices.Ledger, p *Pipeline, log *slog.Logger, reg prometheus.Registerer) *rulesReloader {
	r := &rulesReloader{path: path, ledger: l, pipe: p, log: log,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_rules_reloads_total", Help: "Rule reloads: applied (in force), rejected (invalid file, old rules stay).",
		}, []string{"result"}),
	}
	r.results.WithLabelValues("applied")
	r.results.WithLabelValues("rejected")
	if reg != nil {
		reg.MustRegister(r.results)
	}
	r.loaded = r.stat()
	r.inForce.Store(int64(len(p.eng.Set().Rules)))
	p.swapped = func(e *rules.Engine) {
		r.inForce.Store(int64(len(e.Set().Rules)))
		r.results.WithLabelValues("applied").Inc()
		r.log.Info("rules reloaded and in force", "rules", len(e.Set().Rules), "file", e.Set().File)
	}
	return r
}

// stamp identifies a version of the file.
type stamp struct {
	mod  time.Time
	size int64
}

func (r *rulesReloader) stat() stamp {
	fi, err := os.Stat(r.path)
	if err != nil {
		return stamp{}
	}
	return stamp{fi.ModTime(), fi.Size()}
}

func (r *rulesReloader) run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(reloadPoll)
	defer t.Stop()
	last := r.loaded
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			last = r.stat()
			r.reload("SIGHUP")
		case <-t.C:
			if r.path == "" {
				continue
			}
			if now := r.stat(); now != last {
				last = now
				r.reload("file changed")
			}
		}
	}
}

// reload compiles the file and hands the engine to the pipeline.
func (r *rulesReloader) reload(why string) bool {
	set, err := LoadRules(r.path)
	if err == nil {
		var e *rules.Engine
		// Against the newest registry snapshot, and one change at a time
		// with it (registry.go).
		reg := &r.pipe.reg
		reg.mu.Lock()
		if e, err = rules.NewEngine(set, reg.ledger); err == nil {
			reg.set, reg.eng = set, e
			r.pipe.next.Store(e)
		}
		reg.mu.Unlock()
		if err == nil {
			r.log.Info("rules compiled; in force from the next message", "why", why, "rules", len(set.Rules))
			return true
		}
	}
	r.results.WithLabelValues("rejected").Inc()
	r.log.Error("rule reload rejected; the running rules stay", "why", why, "file", r.path, "err", err)
	return false
}

// LoadRules returns the rule set of the file at path, or the built-in
// defaults when path is empty.
func LoadRules(path string) (*rules.Set, error) {
	if path == "" {
		return rules.Defaults()
	}
	return rules.Load(path)
}
