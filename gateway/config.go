package gateway

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/yamlfile"
	"github.com/firewatch-iot/firewatch/spool"
)

// Config is firegate's configuration file (docs/gateway.md, example in
// docs/firegate.example.yaml).
type Config struct {
	// GatewayID names the gateway in topics: fw/v1/up/gw/{gateway_id}/…
	GatewayID string `yaml:"gateway_id"`
	MQTT      struct {
		// Broker is firewatch's broker; it may list several,
		// comma-separated, as Brokers does.
		Broker string `yaml:"broker"`
		// Brokers, if set, are the brokers to fail over between (the
		// nodes of a cluster, docs/cluster.md), in order of preference;
		// Broker is then ignored. BrokerURLs has the list in effect.
		Brokers  []string `yaml:"brokers"`
		ClientID string   `yaml:"client_id"`
		Username string   `yaml:"username"`
		Password string   `yaml:"password"`
		// BatchRecords bounds the readings of one batch message.
		BatchRecords int `yaml:"batch_records"`
		// PublishTimeout bounds the wait for the broker's PUBACK.
		PublishTimeout time.Duration `yaml:"publish_timeout"`
		// ReconnectMax is the longest backoff between reconnects.
		ReconnectMax time.Duration `yaml:"reconnect_max"`
	} `yaml:"mqtt"`
	Spool struct {
		Dir       string        `yaml:"dir"`
		MaxBytes  int64         `yaml:"max_bytes"`
		SyncEvery time.Duration `yaml:"sync_every"`
		// FS is the spool's file system; nil is the real one. Tests
		// inject faults here.
		FS spool.FS `yaml:"-"`
	} `yaml:"spool"`
	// Maps are extra register map files or directories; the shipped maps
	// are always available.
	Maps []string `yaml:"maps"`
	// StatusInterval is how often the gateway publishes its status.
	StatusInterval time.Duration `yaml:"status_interval"`
	// MetricsListen is the address of the Prometheus /metrics endpoint;
	// empty turns it off.
	MetricsListen string      `yaml:"metrics_listen"`
	Buses         []BusConfig `yaml:"buses"`
}

// BusConfig is one RS-485 port and the devices on it.
type BusConfig struct {
	Port     string `yaml:"port"`
	Baud     int    `yaml:"baud"`
	DataBits int    `yaml:"data_bits"`
	Parity   string `yaml:"parity"`
	StopBits int    `yaml:"stop_bits"`
	// Timeout bounds one request; Retries follow a timeout or a bad frame.
	Timeout time.Duration  `yaml:"timeout"`
	Retries int            `yaml:"retries"`
	Devices []DeviceConfig `yaml:"devices"`
}

// DeviceConfig is one slave on a bus.
type DeviceConfig struct {
	// ID is the device's id in firewatch's ledger.
	ID    string `yaml:"id"`
	Model string `yaml:"model"`
	Slave int    `yaml:"slave"`
	// Interval is the polling period; OfflineAfter the misses in a row
	// after which the device is reported offline.
	Interval     time.Duration `yaml:"interval"`
	OfflineAfter int           `yaml:"offline_after"`
}

// Defaults returns a configuration with every default set.
func Defaults() Config {
	var c Config
	c.MQTT.Broker = "tcp://127.0.0.1:1883"
	c.MQTT.BatchRecords = 200
	c.MQTT.PublishTimeout = 10 * time.Second
	c.MQTT.ReconnectMax = 30 * time.Second
	c.Spool.Dir = "/var/lib/firegate/spool"
	c.Spool.MaxBytes = 64 << 20
	c.StatusInterval = time.Minute
	return c
}

func (b *BusConfig) setDefaults() {
	if b.Baud == 0 {
		b.Baud = 9600
	}
	if b.DataBits == 0 {
		b.DataBits = 8
	}
	if b.Parity == "" {
		b.Parity = "N"
	}
	if b.StopBits == 0 {
		b.StopBits = 1
	}
	if b.Timeout == 0 {
		b.Timeout = 500 * time.Millisecond
	}
	for i := range b.Devices {
		d := &b.Devices[i]
		if d.Interval == 0 {
			d.Interval = 10 * time.Second
		}
		if d.OfflineAfter == 0 {
			d.OfflineAfter = 3
		}
	}
}

// LoadConfig reads a configuration file over the defaults.
func LoadConfig(path string) (Config, error) {
	c := Defaults()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if err := yamlfile.Decode(b, &c); err != nil {
		return c, fmt.Errorf("config %s:%d: %s", path, yamlfile.Line(err), yamlfile.Reason(err))
	}
	return c, nil
}

// Validate sets per-bus defaults and checks the configuration against the
// register maps, returning every problem.
func (c *Config) Validate(maps Maps) error {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if err := devices.CheckID(c.GatewayID); err != nil {
		bad("gateway_id: %v", err)
	}
	if len(c.BrokerURLs()) == 0 {
		bad("mqtt.broker is missing")
	}
	for _, b := range c.BrokerURLs() {
		if u, err := url.Parse(b); err != nil || u.Host == "" || !brokerSchemes[u.Scheme] {
			bad("mqtt.broker %q: want a broker URL such as tcp://host:1883 (tcp, ssl, tls, mqtt, ws, wss)", b)
		}
	}
	if c.MQTT.BatchRecords <= 0 {
		bad("mqtt.batch_records must be positive")
	}
	if c.Spool.Dir == "" {
		bad("spool.dir is missing")
	}
	if c.Spool.MaxBytes < 1<<20 {
		bad("spool.max_bytes %d is below 1 MiB", c.Spool.MaxBytes)
	}
	if c.Spool.SyncEvery < 0 {
		bad("spool.sync_every %v is negative", c.Spool.SyncEvery)
	}
	// Zero durations would panic a ticker or resend a batch at once for
	// ever; the defaults are set before the file is read, so a zero here
	// was written in the file.
	if c.StatusInterval < time.Second {
		bad("status_interval %v: must be at least 1s", c.StatusInterval)
	}
	if c.MQTT.PublishTimeout < 100*time.Millisecond {
		bad("mqtt.publish_timeout %v: must be at least 100ms", c.MQTT.PublishTimeout)
	}
	if c.MQTT.ReconnectMax < 100*time.Millisecond {
		bad("mqtt.reconnect_max %v: must be at least 100ms", c.MQTT.ReconnectMax)
	}
	ids := map[string]bool{}
	for i := range c.Buses {
		b := &c.Buses[i]
		b.setDefaults()
		if b.Port == "" {
			bad("buses[%d]: port is missing", i)
		}
		if b.Timeout < 10*time.Millisecond {
			bad("buses[%d] (%s): timeout %v below 10ms", i, b.Port, b.Timeout)
		}
		if b.Retries < 0 || b.Retries > 5 {
			bad("buses[%d] (%s): retries %d outside 0…5", i, b.Port, b.Retries)
		}
		if b.Parity != "N" && b.Parity != "E" && b.Parity != "O" {
			bad("buses[%d] (%s): parity %q is not N, E or O", i, b.Port, b.Parity)
		}
		slaves := map[int]bool{}
		for j := range b.Devices {
			d := &b.Devices[j]
			where := fmt.Sprintf("buses[%d].devices[%d] (%s)", i, j, d.ID)
			if err := devices.CheckID(d.ID); err != nil {
				bad("%s: %v", where, err)
			}
			if ids[d.ID] {
				bad("%s: duplicate device id", where)
			}
			ids[d.ID] = true
			if maps[d.Model] == nil {
				bad("%s: no register map for model %q", where, d.Model)
			}
			if d.Slave < 1 || d.Slave > 247 {
				bad("%s: slave address %d outside 1…247", where, d.Slave)
			}
			if slaves[d.Slave] {
				bad("%s: slave address %d used twice on %s", where, d.Slave, b.Port)
			}
			slaves[d.Slave] = true
			if d.Interval < 100*time.Millisecond {
				bad("%s: interval %v below 100ms", where, d.Interval)
			}
			if d.OfflineAfter < 1 {
				bad("%s: offline_after %d must be at least 1", where, d.OfflineAfter)
			}
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("config: %d problems:\n  %s", len(probs), joinLines(probs))
	}
	return nil
}

func joinLines(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "\n  "
		}
		out += x
	}
	return out
}

// brokerSchemes are the URL schemes paho connects with.
var brokerSchemes = map[string]bool{"tcp": true, "ssl": true, "tls": true, "mqtt": true, "mqtts": true, "ws": true, "wss": true}

// BrokerURLs returns the brokers the gateway connects to, in order of
// preference: mqtt.brokers, or else mqtt.broker split at commas.
func (c *Config) BrokerURLs() []string {
	list := c.MQTT.Brokers
	if len(list) == 0 {
		list = strings.Split(c.MQTT.Broker, ",")
	}
	var out []string
	for _, b := range list {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
