package bridge

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot/gb45839"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/onenet"
)

// Config is the nbiot section of firewatch's configuration. Only types the
// configuration loader sets from flags and the environment are used
// (strings, integers, durations), so lists are comma-separated.
type Config struct {
	Listen  string `yaml:"listen" help:"own address of the NB-IoT push endpoints (/nbiot/...); empty: on http.listen"`
	TLSCert string `yaml:"tls_cert" help:"PEM certificate (chain) of nbiot.listen: HTTPS, as the platforms should call it"`
	TLSKey  string `yaml:"tls_key" help:"PEM private key of nbiot.listen"`
	MaxBody int    `yaml:"max_body" help:"largest push body in bytes; larger ones are refused (413) and counted"`
	Rate    int    `yaml:"rate" help:"pushes per second each platform may send (burst: one second's worth); more are answered 429 so that the platform retries"`
	Dedupe  int    `yaml:"dedupe" help:"reports remembered to drop a platform's retries of a push already taken"`
	Codecs  string `yaml:"codecs" help:"extra product codecs, comma-separated YAML files or directories (the shipped ones are always loaded)"`
	// Pending bounds the pending entries (devices not in the ledger).
	Pending     int    `yaml:"pending" help:"pending entries (unknown devices, Install_info) kept at most; more are counted and dropped"`
	PendingFile string `yaml:"pending_file" help:"file keeping the pending entries across restarts; empty: memory only"`
	// LostWithin is GB/T 45839's bound on showing a detector's lost
	// communication; liveness caps the grace of bound detectors at it.
	LostWithin time.Duration `yaml:"lost_within" help:"an NB-IoT detector bound in the ledger is offline after at most this long without a report (GB/T 45839: within 24 h), even when its heartbeat × liveness.missed is longer; 0s: no cap"`

	CTWing struct {
		Token    string `yaml:"token" help:"CTWing subscription path token (at least 16 characters): push URL https://host/nbiot/ctwing/{token}; empty: CTWing off" secret:"true"`
		Tenants  string `yaml:"tenants" help:"CTWing tenantIds accepted, comma-separated"`
		Products string `yaml:"products" help:"CTWing productIds accepted, comma-separated"`
	} `yaml:"ctwing"`
	OneNET struct {
		Token  string `yaml:"token" help:"OneNET push token (signs the verification and every push): push URL https://host/nbiot/onenet; empty: OneNET off" secret:"true"`
		AESKey string `yaml:"aes_key" help:"OneNET secure-mode (安全模式) AES key, 16 characters; empty: plain mode" secret:"true"`
	} `yaml:"onenet"`
	GB45839 struct {
		Token string `yaml:"token" help:"GB/T 45839 Appendix D peer path token (at least 12 characters): https://host/nbiot/gb45839/{token}/status_info and /Install_info; empty: off" secret:"true"`
	} `yaml:"gb45839"`
	Forward gb45839.Forward `yaml:"forward"` // to a 中心级 platform (gb45839/forward.go)
}

// Defaults for zero values.
const (
	DefaultRate    = 200
	DefaultPending = 10000
)

// DefaultLostWithin is GB/T 45839's: lost communication shown within 24 h.
const DefaultLostWithin = 24 * time.Hour

// DefaultConfig is the section's defaults (the zero values of the other
// keys take their defaults where they are used).
func DefaultConfig() Config { return Config{LostWithin: DefaultLostWithin} }

func (c *Config) withDefaults() Config {
	d := *c
	if d.Rate == 0 {
		d.Rate = DefaultRate
	}
	if d.Pending == 0 {
		d.Pending = DefaultPending
	}
	return d
}

// Enabled reports whether any platform is configured.
func (c *Config) Enabled() bool {
	return c.CTWing.Token != "" || c.OneNET.Token != "" || c.GB45839.Token != ""
}

// Validate returns every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen != "" || c.TLSCert != "" || c.TLSKey != "" {
		if c.Listen == "" || (c.TLSCert == "") != (c.TLSKey == "") {
			errs = append(errs, errors.New("nbiot: tls_cert and tls_key go together, and need nbiot.listen"))
		}
	}
	if c.MaxBody < 0 || c.Rate < 0 || c.Dedupe < 0 || c.Pending < 0 || c.LostWithin < 0 {
		errs = append(errs, errors.New("nbiot: max_body, rate, dedupe, pending and lost_within must not be negative (0: default, or no cap)"))
	}
	if err := c.Forward.Validate(); err != nil { // gb45839/forward.go
		errs = append(errs, err)
	}
	if t := c.CTWing.Token; t != "" {
		if len(t) < 16 {
			errs = append(errs, errors.New("nbiot.ctwing.token: at least 16 characters (openssl rand -hex 16)"))
		}
		if len(List(c.CTWing.Tenants)) == 0 || len(List(c.CTWing.Products)) == 0 {
			errs = append(errs, errors.New("nbiot.ctwing: set tenants and products (the ids CTWing pushes for)"))
		}
	}
	if c.OneNET.Token != "" {
		if err := (onenet.Config{Token: c.OneNET.Token, AESKey: c.OneNET.AESKey}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("nbiot.onenet: %w", err))
		}
	} else if c.OneNET.AESKey != "" {
		errs = append(errs, errors.New("nbiot.onenet.aes_key: set nbiot.onenet.token too"))
	}
	if t := c.GB45839.Token; t != "" && len(t) < 12 {
		errs = append(errs, errors.New("nbiot.gb45839.token: at least 12 characters"))
	}
	return errors.Join(errs...)
}

// List splits a comma-separated list, dropping blanks.
func List(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
