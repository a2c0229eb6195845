package server

import (
	"errors"
	"time"
)

// Config configures the endpoint. Embedded in firewatch's configuration as the gb26875 section; both
// listeners are off by default.
type Config struct {
	Listen         string        `yaml:"listen" help:"TCP address of the GB/T 26875.3 monitoring-centre endpoint for UITDs (用户信息传输装置), e.g. 0.0.0.0:9026; empty: off"`
	ListenUDP      string        `yaml:"listen_udp" help:"UDP address of the GB/T 26875.3 endpoint (one frame per datagram); empty: off"`
	MaxConnections int           `yaml:"max_connections" help:"open UITD connections (TCP) and remote addresses (UDP) at most; a connection beyond it is closed at once and counted"`
	IdleTimeout    time.Duration `yaml:"idle_timeout" help:"a UITD connection with nothing received this long is closed (the UITD connects again when it next sends)"`
	WriteTimeout   time.Duration `yaml:"write_timeout" help:"bound on writing one answer to a UITD; a UITD that does not read is disconnected"`
	ClockSkew      time.Duration `yaml:"clock_skew" help:"a UITD whose packet time is further off the centre's clock is sent the centre's time (type 90, 校时)"`
	// Issue 13, the centre's duties (duty.go).
	ClockSyncEvery time.Duration `yaml:"clock_sync_every" help:"the centre's time (type 90, 校时) is sent to a UITD on its connection's first frame and then this often; 0: only when its clock is off by clock_skew"`
	InspectEvery   time.Duration `yaml:"inspect_every" help:"mean interval of the scheduled 查岗 (type 91) of each UITD, at a random time in every period; 0: off (查岗 from the API only)"`
	InspectAnswer  time.Duration `yaml:"inspect_answer" help:"time the fire control room has to answer a 查岗 (sent in whole minutes, 1 min to 255 min); unanswered by then, the 查岗 counts as failed"`
}

// Defaults of Config.
const (
	DefaultMaxConnections = 10000
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultWriteTimeout   = 10 * time.Second
	DefaultClockSkew      = time.Minute
	DefaultClockSyncEvery = 24 * time.Hour
	DefaultInspectAnswer  = 10 * time.Minute
)

// DefaultConfig is the configuration with every default set and both listeners off.
func DefaultConfig() Config {
	return Config{MaxConnections: DefaultMaxConnections, IdleTimeout: DefaultIdleTimeout,
		WriteTimeout: DefaultWriteTimeout, ClockSkew: DefaultClockSkew,
		ClockSyncEvery: DefaultClockSyncEvery, InspectAnswer: DefaultInspectAnswer}
}

// Enabled reports whether a listener is configured.
func (c *Config) Enabled() bool { return c.Listen != "" || c.ListenUDP != "" }

// Validate returns the configuration's problems.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxConnections <= 0 {
		errs = append(errs, errors.New("gb26875.max_connections must be positive"))
	}
	if c.IdleTimeout <= 0 || c.WriteTimeout <= 0 || c.ClockSkew <= 0 {
		errs = append(errs, errors.New("gb26875: idle_timeout, write_timeout and clock_skew must be positive"))
	}
	if c.ClockSyncEvery < 0 || c.InspectEvery < 0 {
		errs = append(errs, errors.New("gb26875: clock_sync_every and inspect_every must not be negative"))
	}
	if c.InspectAnswer <= 0 || c.InspectAnswer > 255*time.Minute {
		errs = append(errs, errors.New("gb26875.inspect_answer must be between 1 s and 255 min (the 查岗 frame carries whole minutes, at most 255)"))
	}
	return errors.Join(errs...)
}
