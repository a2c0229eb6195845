package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/internal/yamlfile"
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

	MQTT struct {
		// Broker is an external broker URL; empty runs the embedded one.
		Broker   string `yaml:"broker" help:"external MQTT broker URL (tcp://host:1883); empty: run the embedded broker"`
		Listen   string `yaml:"listen" help:"address of the embedded broker"`
		ClientID string `yaml:"client_id" help:"MQTT client id (fixed: it names the persistent session)"`
		Username string `yaml:"username" help:"MQTT username"`
		Password string `yaml:"password" help:"MQTT password" secret:"true"`
	} `yaml:"mqtt"`

	Influx struct {
		URL             string        `yaml:"url" help:"InfluxDB URL (1.8 compatibility API or 2.x)"`
		Token           string        `yaml:"token" help:"InfluxDB token (1.8: user:password, or empty)" secret:"true"`
		Org             string        `yaml:"org" help:"InfluxDB organisation (ignored by 1.8)"`
		Bucket          string        `yaml:"bucket" help:"bucket (1.8: database/retention-policy)"`
		BatchLines      int           `yaml:"batch_lines" help:"lines per write"`
		FlushInterval   time.Duration `yaml:"flush_interval" help:"longest time a line waits before it is written"`
		MaxPending      int           `yaml:"max_pending" help:"batches held in memory while InfluxDB is slow or down"`
		Timeout         time.Duration `yaml:"timeout" help:"bound on one write request"`
		ShutdownTimeout time.Duration `yaml:"shutdown_timeout" help:"bound on the final flush at shutdown"`
		ContentEncoding string        `yaml:"content_encoding" help:"gzip or identity: compress write bodies"`
	} `yaml:"influx"`

	Alarms struct {
		DB              string        `yaml:"db" help:"SQLite file of the alarm store and outbox"`
		Secret          string        `yaml:"secret" help:"HMAC-SHA256 key that signs dispatch pushes" secret:"true"`
		BrigadeEndpoint string        `yaml:"brigade_endpoint" help:"dispatch webhook of the fire rescue brigade (消防救援大队); fire alarms also go here"`
		RetryMin        time.Duration `yaml:"retry_min" help:"first retry delay of a failed push"`
		RetryMax        time.Duration `yaml:"retry_max" help:"longest retry delay of a failed push"`
	} `yaml:"alarms"`

	HTTP struct {
		Listen string `yaml:"listen" help:"address of the HTTP API, /metrics and /healthz"`
	} `yaml:"http"`

	Log struct {
		Level  string `yaml:"level" help:"log level: debug, info, warn, error"`
		Format string `yaml:"format" help:"log format: text or json"`
	} `yaml:"log"`
}

// defaults sets every default in one place.
func defaults() Config {
	var c Config
	c.Ledger = "devices.yaml"
	c.MQTT.Listen = "127.0.0.1:1883"
	c.MQTT.ClientID = "firewatch"
	c.Influx.URL = "http://127.0.0.1:8086"
	c.Influx.Bucket = "firewatch/autogen"
	c.Influx.BatchLines = 5000
	c.Influx.FlushInterval = time.Second
	c.Influx.MaxPending = 64
	c.Influx.Timeout = influx.DefaultTimeout
	c.Influx.ShutdownTimeout = influx.DefaultShutdownTimeout
	c.Influx.ContentEncoding = influx.DefaultContentEncoding
	c.Alarms.DB = "var/alarms.db"
	c.Alarms.RetryMin = 500 * time.Millisecond
	c.Alarms.RetryMax = 30 * time.Second
	c.HTTP.Listen = "127.0.0.1:9090"
	c.Log.Level = "info"
	c.Log.Format = "text"
	return c
}

// Validate returns every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Ledger == "" {
		errs = append(errs, errors.New("ledger: a ledger file is required"))
	}
	if c.Alarms.Secret == "" {
		errs = append(errs, errors.New("alarms.secret: set a signing key for dispatch pushes (FIREWATCH_ALARMS_SECRET)"))
	}
	if c.Influx.BatchLines <= 0 || c.Influx.MaxPending <= 0 || c.Influx.FlushInterval <= 0 {
		errs = append(errs, errors.New("influx: batch_lines, max_pending and flush_interval must be positive"))
	}
	if c.Influx.ContentEncoding != "gzip" && c.Influx.ContentEncoding != "identity" {
		errs = append(errs, fmt.Errorf("influx.content_encoding: %q is not gzip or identity", c.Influx.ContentEncoding))
	}
	if c.Alarms.RetryMin <= 0 || c.Alarms.RetryMax < c.Alarms.RetryMin {
		errs = append(errs, errors.New("alarms: retry_min must be positive and retry_max at least retry_min"))
	}
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
		fs.Func(f.path, fmt.Sprintf("%s (env %s, default %q)", f.help, envName(f.path), def), func(s string) error {
			set[f.path] = s
			return nil
		})
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
