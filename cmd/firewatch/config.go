package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/durable"
	gb26875server "github.com/firewatch-iot/firewatch/ingest/gb26875/server"
	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/bridge"
	"github.com/firewatch-iot/firewatch/internal/yamlfile"
	"github.com/firewatch-iot/firewatch/pipeline"
	"github.com/firewatch-iot/firewatch/registry"
	"github.com/firewatch-iot/firewatch/responder"
)

// Config is firewatch's one configuration file. Every key can also be set
// by a flag named for its path (-mqtt.broker) or by an environment variable
// (FIREWATCH_MQTT_BROKER); flags win over the environment, which wins over
// the file, which wins over the defaults. docs/config.md lists every key.
type Config struct {
	// Ledger is the device and station ledger (台账).
	Ledger string `yaml:"ledger" help:"device and station ledger (YAML)"`
	// Rules is the rule file; empty means the built-in defaults.
	Rules string `yaml:"rules" help:"rule file (YAML); empty: built-in rules/defaults.yaml"`

	// MQTT is the broker section: an external broker or the embedded one
	// (broker/settings.go).
	MQTT broker.Settings `yaml:"mqtt"`

	// The pipeline's sections (pipeline/config.go).
	Ingest   pipeline.IngestConfig   `yaml:"ingest"`
	Liveness pipeline.LivenessConfig `yaml:"liveness"`

	// Influx is the InfluxDB writer's own configuration (ingest/influx).
	Influx influx.Config `yaml:"influx"`

	// Alarms is the alarm manager's section (alarms/settings.go).
	Alarms alarms.Settings `yaml:"alarms"`

	HTTP struct {
		Listen string `yaml:"listen" help:"address of the HTTP API, /metrics and /healthz"`
		// Pprof serves Go's profiler under /debug/pprof/ (off by default: it
		// exposes internals and can cost CPU).
		Pprof  bool   `yaml:"pprof" help:"serve the Go profiler under /debug/pprof/"`
		Tokens string `yaml:"tokens" help:"API bearer tokens, comma-separated name:role:secret (roles viewer, operator, admin)" secret:"true"`
		// Limits against slow or too many clients (docs/security.md).
		ReadTimeout    time.Duration `yaml:"read_timeout" help:"bound on reading one request, headers and body (headers alone: at most 10s)"`
		WriteTimeout   time.Duration `yaml:"write_timeout" help:"bound on handling a request and writing its response (also the longest /debug/pprof/profile)"`
		IdleTimeout    time.Duration `yaml:"idle_timeout" help:"how long an idle keep-alive connection is kept"`
		MaxConnections int           `yaml:"max_connections" help:"open HTTP connections at most; more wait to be accepted"`

		// PublicURL: issue 16's responder links (cmd/firewatch/responder.go).
		PublicURL string `yaml:"public_url" help:"base URL at which phones reach this HTTP server, for the responder links in pushes (default: http:// and http.listen)"`
	} `yaml:"http"`

	Log struct {
		Level  string `yaml:"level" help:"log level: debug, info, warn, error"`
		Format string `yaml:"format" help:"log format: text or json"`
	} `yaml:"log"`

	// State is the checkpoint of rule state and liveness (pipeline/checkpoint.go).
	State pipeline.StateConfig `yaml:"state"`

	NBIoT bridge.Config `yaml:"nbiot"` // NB-IoT platform pushes (docs/nbiot.md)

	// GB26875 is the GB/T 26875.3 endpoint for UITDs (gb26875.go).
	GB26875 gb26875server.Config `yaml:"gb26875"`

	Console responder.ConsoleConfig `yaml:"console"` // the console's map tiles (docs/console.md)

	// Durability: when a device's message is acknowledged (durable/, issue 15; durability.go).
	Durability durable.Config    `yaml:"durability"`
	Registry   registry.Settings `yaml:"registry"` // the registry's store (docs/registry.md)
	Cluster    cluster.Config    `yaml:"cluster"`  // issue 15: cluster mode on NATS JetStream (docs/cluster.md)
}

// defaults sets every default in one place.
func defaults() Config {
	var c Config
	c.Ledger = "devices.yaml"
	c.MQTT = broker.DefaultSettings()
	c.Ingest = pipeline.DefaultIngest()
	c.State = pipeline.DefaultState()
	c.Liveness = pipeline.DefaultLiveness()
	c.Influx.URL = "http://127.0.0.1:8086"
	c.Influx.SetDefaults()
	c.Alarms = alarms.DefaultSettings()
	c.HTTP.Listen = "127.0.0.1:9090"
	c.HTTP.ReadTimeout = 30 * time.Second
	c.HTTP.WriteTimeout = time.Minute
	c.HTTP.IdleTimeout = 2 * time.Minute
	c.HTTP.MaxConnections = 512
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.NBIoT = bridge.DefaultConfig()
	c.GB26875 = gb26875server.DefaultConfig()
	c.Durability = durable.DefaultConfig()
	c.Cluster = cluster.DefaultConfig()
	c.Registry = registry.DefaultSettings()
	return c
}

// Validate returns every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Ledger == "" {
		errs = append(errs, errors.New("ledger: a ledger file is required"))
	}
	errs = append(errs, c.Alarms.Validate(), c.MQTT.Validate())
	if c.Influx.BatchLines <= 0 || c.Influx.MaxPending <= 0 || c.Influx.FlushInterval <= 0 {
		errs = append(errs, errors.New("influx: batch_lines, max_pending and flush_interval must be positive"))
	}
	if c.Influx.SpoolDir != "none" && c.Influx.SpoolMaxMB < influx.MinSpoolMaxMB {
		errs = append(errs, fmt.Errorf("influx.spool_max_mb: %d is below %d", c.Influx.SpoolMaxMB, influx.MinSpoolMaxMB))
	}
	if c.Influx.ContentEncoding != "gzip" && c.Influx.ContentEncoding != "identity" {
		errs = append(errs, fmt.Errorf("influx.content_encoding: %q is not gzip or identity", c.Influx.ContentEncoding))
	}
	errs = append(errs, c.State.Validate(), c.Ingest.Validate(), c.Liveness.Validate())
	if c.HTTP.ReadTimeout <= 0 || c.HTTP.WriteTimeout <= 0 || c.HTTP.IdleTimeout <= 0 || c.HTTP.MaxConnections <= 0 {
		errs = append(errs, errors.New("http: read_timeout, write_timeout, idle_timeout and max_connections must be positive"))
	}
	if _, err := alarms.ParseTokens(c.HTTP.Tokens); err != nil {
		errs = append(errs, fmt.Errorf("http.tokens: %w", err))
	} else if c.HTTP.Tokens == "" && !loopback(c.HTTP.Listen) {
		errs = append(errs, fmt.Errorf("http.tokens: http.listen %s is not a loopback address: set API tokens (FIREWATCH_HTTP_TOKENS), or the alarms would be readable by anyone", c.HTTP.Listen))
	}
	if err := c.NBIoT.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.GB26875.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Console.Validate())
	errs = append(errs, c.Durability.Validate())
	errs = append(errs, c.Cluster.Validate())
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

// field is one configuration key found by walking Config.
type field struct {
	path   string // mqtt.broker
	help   string
	secret bool
	v      reflect.Value
}

func fields(c *Config) []field {
	var out []field
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Tag.Get("yaml") == "-" {
				continue // not a key: a library's runtime field (a logger) or test hook
			}
			name := prefix + f.Tag.Get("yaml")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(name+".", v.Field(i))
				continue
			}
			out = append(out, field{path: name, help: f.Tag.Get("help"), secret: f.Tag.Get("secret") == "true", v: v.Field(i)})
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	return out
}

func (f field) set(s string) error {
	switch p := f.v.Addr().Interface().(type) {
	case *string:
		*p = s
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", f.path, s)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not an integer", f.path, s)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration such as 30s", f.path, s)
		}
		*p = d
	default:
		return fmt.Errorf("%s: unsupported type %T", f.path, p)
	}
	return nil
}

func envName(path string) string {
	return "FIREWATCH_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(path))
}

// loadConfig builds the configuration from defaults, the file named by
// -config (or FIREWATCH_CONFIG), the environment and the flags in args.
func loadConfig(args []string, getenv func(string) string) (*Config, error) {
	c := defaults()
	fs := flag.NewFlagSet("firewatch", flag.ContinueOnError)
	path := fs.String("config", getenv("FIREWATCH_CONFIG"), "configuration file (YAML)")
	set := map[string]string{}
	for _, f := range fields(&c) {
		def := fmt.Sprint(f.v.Interface())
		if f.secret {
			def = ""
		}
		usage := fmt.Sprintf("%s (env %s, default %q)", f.help, envName(f.path), def)
		record := func(s string) error {
			set[f.path] = s
			return nil
		}
		if f.v.Kind() == reflect.Bool {
			fs.BoolFunc(f.path, usage, record) // -http.pprof alone means true
		} else {
			fs.Func(f.path, usage, record)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *path != "" {
		b, err := os.ReadFile(*path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := yamlfile.Decode(b, &c); err != nil {
			return nil, fmt.Errorf("config %s:%d: %s", *path, yamlfile.Line(err), yamlfile.Reason(err))
		}
	}
	for _, f := range fields(&c) {
		if s := getenv(envName(f.path)); s != "" {
			if err := f.set(s); err != nil {
				return nil, fmt.Errorf("%s: %w", envName(f.path), err)
			}
		}
		if s, ok := set[f.path]; ok {
			if err := f.set(s); err != nil {
				return nil, fmt.Errorf("-%w", err)
			}
		}
	}
	return &c, c.Validate()
}

// influxSpoolDir resolves influx.spool_dir: empty means influx-spool beside
// the SQLite alarm store (so that one data directory holds all state), or
// var/influx-spool when the store is PostgreSQL; "none" disables the spool.
func (c *Config) influxSpoolDir() string {
	switch d := c.Influx.SpoolDir; {
	case d == "none":
		return ""
	case d != "":
		return d
	case strings.Contains(c.Alarms.DB, "://"):
		return filepath.Join("var", "influx-spool")
	default:
		return filepath.Join(filepath.Dir(c.Alarms.DB), "influx-spool")
	}
}

// stateFile resolves state.file: empty means firewatch.state beside the
// SQLite alarm store (var/firewatch.state for a postgres:// store); "none"
// disables the checkpoint.
func (c *Config) stateFile() string {
	switch f := c.State.File; {
	case f == "none":
		return ""
	case f != "":
		return f
	case strings.Contains(c.Alarms.DB, "://"):
		return filepath.Join("var", "firewatch.state")
	default:
		return filepath.Join(filepath.Dir(c.Alarms.DB), "firewatch.state")
	}
}
