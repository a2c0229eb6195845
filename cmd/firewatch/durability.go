package main

import (
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/durable"
	"github.com/firewatch-iot/firewatch/ingest/influx"
)

// Issue 15: a device's message is acknowledged once its readings are
// durable (durable/). The tracker stands between the pipeline and the
// InfluxDB writer: it is the pipeline's Lines and its Durability.

// walDir resolves durability.wal_dir: empty means wal beside the SQLite
// alarm store (var/wal for a postgres:// store).
func (c *Config) walDir() string {
	switch d := c.Durability.WALDir; {
	case d != "":
		return d
	case strings.Contains(c.Alarms.DB, "://"):
		return filepath.Join("var", "wal")
	default:
		return filepath.Join(filepath.Dir(c.Alarms.DB), "wal")
	}
}

// newTracker opens the durability.mode's tracker over w; nil for off. In
// mode wal it writes what the last run's log holds to w again.
func (s *service) newTracker(w *influx.Writer, reg prometheus.Registerer) (durable.Tracker, error) {
	c := s.cfg.Durability
	switch c.Mode {
	case durable.ModeWAL:
		return durable.OpenLog(s.cfg.walDir(), c.CommitWindow, w, durable.Options{Logger: s.log, Registerer: reg})
	case durable.ModeWritten:
		return durable.NewWritten(w), nil
	}
	return nil, nil
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
