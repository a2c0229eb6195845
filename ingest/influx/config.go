package influx

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/spool"
)

// SampleConfig is an example of the influx section of the firewatch config,
// with every key at its default.
//
//go:embed sample.yaml
var SampleConfig string

// Config configures a Writer. It is the influx section of the firewatch
// config file: its YAML keys, help texts and secret marks make that
// section's keys, flags (-influx.url), environment variables
// (FIREWATCH_INFLUX_URL) and docs/config.md rows. firewatch resolves
// SpoolDir's empty and "none" values (its help text) before NewWriter.
type Config struct {
	// URL is the InfluxDB base URL, e.g. http://127.0.0.1:8086.
	URL string `yaml:"url" help:"InfluxDB URL (1.8 compatibility API or 2.x)"`
	// Token authenticates: an API token for InfluxDB 2.x/3.x, "user:password"
	// for 1.8 with auth enabled, empty for 1.8 without auth.
	Token string `yaml:"token" help:"InfluxDB token (1.8: user:password, or empty)" secret:"true"`
	// Org is the organization; InfluxDB 1.8 ignores it.
	Org string `yaml:"org" help:"InfluxDB organisation (ignored by 1.8)"`
	// Bucket is the bucket; for InfluxDB 1.8 "database/retention-policy".
	Bucket string `yaml:"bucket" help:"bucket (1.8: database/retention-policy)"`
	// BatchLines is how many lines a batch collects before it is sent.
	BatchLines int `yaml:"batch_lines" help:"lines per write"`
	// FlushInterval is how long a line may wait in a batch that is not full.
	FlushInterval time.Duration `yaml:"flush_interval" help:"longest time a line waits before it is written"`
	// MaxPending is how many full batches may wait in memory while InfluxDB
	// is slow or down; beyond it the oldest batch is dropped.
	MaxPending int `yaml:"max_pending" help:"batches held in memory while InfluxDB is slow or down"`
	// Timeout bounds one write request.
	Timeout time.Duration `yaml:"timeout" help:"bound on one write request"`
	// ShutdownTimeout bounds the final flush when Run's context ends.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" help:"bound on the final flush at shutdown"`
	// ContentEncoding is "gzip" (compress request bodies, the default) or
	// "identity". Compression costs about a microsecond of CPU per line on
	// each side; it pays over a WAN link, not to an InfluxDB on the same host.
	ContentEncoding string `yaml:"content_encoding" help:"gzip or identity: compress write bodies"`
	// SpoolDir is the directory of the on-disk spool that takes batches
	// while InfluxDB fails or falls behind, and keeps them across restarts;
	// empty: no spool (a full memory queue drops its oldest batch). The
	// help text is firewatch's, which resolves the key first.
	SpoolDir string `yaml:"spool_dir" help:"on-disk spool for batches InfluxDB cannot take now; empty: influx-spool beside alarms.db (var/influx-spool for a postgres:// store); none: no spool"`
	// SpoolMaxMB bounds the spool on disk, in MiB; beyond it the oldest
	// batches are dropped and counted (reason spool_full).
	SpoolMaxMB int `yaml:"spool_max_mb" help:"bound on the spool in MiB; beyond it the oldest batches are dropped and counted"`
	// DeadLetterPath is the file where lines InfluxDB keeps refusing are
	// parked (appended, as line protocol after a comment saying why);
	// empty: dead-letter.lp in SpoolDir, or, without a spool, none (the
	// lines are logged and counted only).
	DeadLetterPath string `yaml:"dead_letter_path" help:"file where lines InfluxDB keeps refusing are parked; empty: dead-letter.lp in the spool directory, or none without a spool (logged and counted only)"`
	// spoolBytes and spoolSegment override the spool's sizes in tests, to
	// fill it without writing gigabytes.
	spoolBytes, spoolSegment int64
	// spoolFS overrides the spool's file system in tests.
	spoolFS spool.FS

	// Logger receives the writer's logs; nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Registerer registers the writer's metrics; nil means none.
	Registerer prometheus.Registerer `yaml:"-"`
}

// Defaults of Config, applied by NewWriter to zero fields.
const (
	DefaultBucket          = "firewatch/autogen"
	DefaultBatchLines      = 5000
	DefaultFlushInterval   = time.Second
	DefaultMaxPending      = 64
	DefaultTimeout         = 10 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultContentEncoding = "gzip"
	DefaultSpoolMaxMB      = 2048
	// MinSpoolMaxMB leaves room for a few segments of two maximal batches.
	MinSpoolMaxMB = 64
)

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.BatchLines == 0 {
		c.BatchLines = DefaultBatchLines
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ContentEncoding == "" {
		c.ContentEncoding = DefaultContentEncoding
	}
	if c.SpoolMaxMB == 0 {
		c.SpoolMaxMB = DefaultSpoolMaxMB
	}
}

// Validate returns every problem of c, joined.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("influx.url %q is not an http(s) URL", c.URL))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("influx.bucket is empty"))
	}
	if c.BatchLines < 1 {
		errs = append(errs, fmt.Errorf("influx.batch_lines %d must be at least 1", c.BatchLines))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("influx.flush_interval %v must be positive", c.FlushInterval))
	}
	if c.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("influx.max_pending %d must be at least 1", c.MaxPending))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("influx.timeout %v must be positive", c.Timeout))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("influx.shutdown_timeout %v must be positive", c.ShutdownTimeout))
	}
	if c.ContentEncoding != "gzip" && c.ContentEncoding != "identity" {
		errs = append(errs, fmt.Errorf("influx.content_encoding %q must be gzip or identity", c.ContentEncoding))
	}
	if c.SpoolDir != "" && c.SpoolMaxMB < MinSpoolMaxMB {
		errs = append(errs, fmt.Errorf("influx.spool_max_mb %d must be at least %d", c.SpoolMaxMB, MinSpoolMaxMB))
	}
	return errors.Join(errs...)
}
