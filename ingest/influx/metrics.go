package influx

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the writer's Prometheus metrics.
type metrics struct {
	writeSeconds     prometheus.Histogram
	writeErrors      prometheus.Counter
	linesWritten     prometheus.Counter
	pending          prometheus.Gauge
	droppedQueueFull prometheus.Counter
	droppedRejected  prometheus.Counter
	droppedShutdown  prometheus.Counter
	droppedClosed    prometheus.Counter
	droppedSpoolFull prometheus.Counter
	spooledLines     prometheus.Counter
	replayedLines    prometheus.Counter
	spoolBatches     prometheus.Gauge
	spoolBytes       prometheus.Gauge
	dropped          *prometheus.CounterVec
	deadLetter       *prometheus.CounterVec
}

// Reasons of firewatch_influx_dropped_lines_total.
const (
	// DropQueueFull: the oldest batch made room while InfluxDB was slow or down.
	DropQueueFull = "queue_full"
	// DropRejected: InfluxDB refused the lines as invalid (HTTP 400/413/422).
	DropRejected = "rejected"
	// DropShutdown: still unsent when the shutdown deadline passed.
	DropShutdown = "shutdown"
	// DropClosed: written after the writer shut down.
	DropClosed = "closed"
	// DropSpoolFull: the on-disk spool reached spool_max_mb and dropped its
	// oldest batches.
	DropSpoolFull = "spool_full"
	// DropPoison: a batch failed with retryable errors again and again
	// while other batches went through; split down to single lines, the
	// ones still failing were parked in the dead-letter file.
	DropPoison = "poison"
)

// DeadLetterFile is the name of the dead-letter file in the spool
// directory when Config.DeadLetterPath is empty.
const DeadLetterFile = "dead-letter.lp"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firewatch_influx_dropped_lines_total",
		Help: "Lines of line protocol given up on, by reason: queue_full, rejected, poison, shutdown, closed, spool_full.",
	}, []string{"reason"})
	deadLetter := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firewatch_influx_dead_letter_lines_total",
		Help: "Lines InfluxDB kept refusing, parked in the dead-letter file, by reason: rejected, poison. Alert on any increase.",
	}, []string{"reason"})
	m := &metrics{
		dropped:    dropped,
		deadLetter: deadLetter,
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "firewatch_influx_write_seconds",
			Help:    "Duration of one write request to InfluxDB, successful or not.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_influx_write_errors_total",
			Help: "Write requests to InfluxDB that failed, retried or not.",
		}),
		linesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_influx_lines_written_total",
			Help: "Lines of line protocol InfluxDB accepted.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewatch_influx_pending_batches",
			Help: "Full batches in memory: waiting to be sent, being sent or being spilled to the spool.",
		}),
		droppedQueueFull: dropped.WithLabelValues(DropQueueFull),
		droppedRejected:  dropped.WithLabelValues(DropRejected),
		droppedShutdown:  dropped.WithLabelValues(DropShutdown),
		droppedClosed:    dropped.WithLabelValues(DropClosed),
		droppedSpoolFull: dropped.WithLabelValues(DropSpoolFull),
		spooledLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_influx_spooled_lines_total",
			Help: "Lines moved from memory to the on-disk spool because InfluxDB failed or fell behind.",
		}),
		replayedLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_influx_replayed_lines_total",
			Help: "Lines sent to InfluxDB from the on-disk spool.",
		}),
		spoolBatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewatch_influx_spool_batches",
			Help: "Batches waiting in the on-disk spool.",
		}),
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewatch_influx_spool_bytes",
			Help: "Size of the on-disk spool's segment files.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.writeSeconds, m.writeErrors, m.linesWritten, m.pending, dropped,
		m.spooledLines, m.replayedLines, m.spoolBatches, m.spoolBytes, deadLetter} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("influx metrics: %w", err)
		}
	}
	return m, nil
}
