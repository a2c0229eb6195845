package pipeline

import (
	"errors"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
)

// The pipeline's sections of the firewatch configuration file. Each is
// embedded in cmd/firewatch's Config under its YAML key, which also makes
// the flags (-liveness.tick) and environment variables
// (FIREWATCH_LIVENESS_TICK) and the rows of docs/config.md.

// IngestConfig is the ingest section: the timestamp policy of the decoder
// (docs/rules.md, "Clocks").
type IngestConfig struct {
	MaxFuture time.Duration `yaml:"max_future" help:"a ts further ahead of the receive time is a wrong clock: the reading stands at its receive time"`
	MaxAge    time.Duration `yaml:"max_age" help:"a ts older than this on a device's own topic is a wrong clock (the reading stands at its receive time); in a gateway batch, a replay kept under its ts"`
}

// LivenessConfig is the liveness section: when a silent device is offline
// (离线).
type LivenessConfig struct {
	Tick       time.Duration `yaml:"tick" help:"resolution of the offline check: an offline alarm comes at most one tick after the grace"`
	Missed     int           `yaml:"missed" help:"heartbeats a device may miss before it is offline (离线)"`
	Electrical time.Duration `yaml:"electrical" help:"heartbeat interval of electrical-fire monitors"`
	Smoke      time.Duration `yaml:"smoke" help:"heartbeat interval of smoke detectors (NB-IoT)"`
	Hydrant    time.Duration `yaml:"hydrant" help:"heartbeat interval of hydrant pressure sensors"`
	Charger    time.Duration `yaml:"charger" help:"heartbeat interval of e-bike charging cabinets"`
	// LostWithin, if positive, caps the offline grace of every device
	// (GB/T 45839: a lost detector shown within 24 h); set by the caller
	// from nbiot.lost_within, not a key of this section.
	LostWithin time.Duration `yaml:"-"`
}

// StateConfig is the state section: the checkpoint of rule state and
// liveness (checkpoint.go). File's empty and "none" values are resolved by
// the caller (Options.StateFile).
type StateConfig struct {
	File     string        `yaml:"file" help:"checkpoint of rule state and liveness, kept across restarts; empty: firewatch.state beside alarms.db (var/firewatch.state for a postgres:// store); none: no checkpoint"`
	Interval time.Duration `yaml:"interval" help:"how often the checkpoint is written (and at shutdown); a kill -9 loses the rule state of at most this long"`
}

// DefaultIngest returns the ingest section's defaults.
func DefaultIngest() IngestConfig {
	return IngestConfig{MaxFuture: ingest.DefaultMaxFuture, MaxAge: ingest.DefaultMaxAge}
}

// DefaultLiveness returns the liveness section's defaults.
func DefaultLiveness() LivenessConfig {
	return LivenessConfig{
		Tick: time.Second, Missed: devices.DefaultMissed,
		Electrical: devices.DefaultHeartbeat[devices.KindElectrical],
		Smoke:      devices.DefaultHeartbeat[devices.KindSmoke],
		Hydrant:    devices.DefaultHeartbeat[devices.KindHydrant],
		Charger:    devices.DefaultHeartbeat[devices.KindCharger],
	}
}

// DefaultState returns the state section's defaults.
func DefaultState() StateConfig { return StateConfig{Interval: 30 * time.Second} }

// Validate returns the section's problem, if any.
func (c IngestConfig) Validate() error {
	if c.MaxFuture < 0 || c.MaxAge < 0 {
		return errors.New("ingest: max_future and max_age must not be negative (0 disables)")
	}
	return nil
}

// Validate returns the section's problem, if any.
func (c LivenessConfig) Validate() error {
	if c.Tick <= 0 || c.Missed <= 0 || c.Electrical <= 0 || c.Smoke <= 0 || c.Hydrant <= 0 || c.Charger <= 0 {
		return errors.New("liveness: tick, missed and the heartbeat intervals must be positive")
	}
	return nil
}

// Validate returns the section's problem, if any.
func (c StateConfig) Validate() error {
	if c.File != "none" && c.Interval <= 0 {
		return errors.New("state.interval must be positive (or state.file none)")
	}
	return nil
}
