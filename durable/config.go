package durable

import (
	"fmt"
	"time"
)

// The modes of Config.Mode.
const (
	// ModeWAL acknowledges a message once its readings are in the fsynced
	// write-ahead log (Log).
	ModeWAL = "wal"
	// ModeWritten acknowledges a message once its readings are in InfluxDB
	// or the writer's on-disk spool (Written).
	ModeWritten = "written"
	// ModeOff acknowledges a message once its readings are in the
	// writer's batch in memory: a kill -9 loses up to influx.flush_interval
	// of acknowledged readings (the behaviour before issue 15).
	ModeOff = "off"
)

// DefaultCommitWindow is the default of Config.CommitWindow.
const DefaultCommitWindow = 2 * time.Millisecond

// MaxCommitWindow bounds Config.CommitWindow: a device waits up to the
// window (and an fsync) for its acknowledgement.
const MaxCommitWindow = 50 * time.Millisecond

// Config is the durability section of the firewatch configuration: when a
// device's message is acknowledged.
type Config struct {
	Mode         string        `yaml:"mode" help:"when a message is acknowledged to its sender: wal (its readings are in the fsynced write-ahead log; survives kill -9), written (in InfluxDB or the influx spool; cluster mode), off (in the writer's memory batch: a kill -9 loses up to influx.flush_interval of acknowledged readings)"`
	WALDir       string        `yaml:"wal_dir" help:"directory of the write-ahead log (mode wal); empty: wal beside alarms.db (var/wal for a postgres:// store)"`
	CommitWindow time.Duration `yaml:"commit_window" help:"the write-ahead log is fsynced at most once per window, for every message of the window: a device's acknowledgement waits up to the window plus one fsync"`
}

// DefaultConfig returns the section's defaults.
func DefaultConfig() Config { return Config{Mode: ModeWAL, CommitWindow: DefaultCommitWindow} }

// Validate returns the section's problem, if any.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeWAL, ModeWritten, ModeOff:
	default:
		return fmt.Errorf("durability.mode %q: want wal, written or off", c.Mode)
	}
	if c.Mode == ModeWAL && (c.CommitWindow <= 0 || c.CommitWindow > MaxCommitWindow) {
		return fmt.Errorf("durability.commit_window %v: want more than 0 and at most %v", c.CommitWindow, MaxCommitWindow)
	}
	return nil
}
