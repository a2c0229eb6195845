package cluster

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is the `cluster:` section of firewatch's configuration (issue 15).
// Off by default: firewatch then runs as one process with its embedded
// broker or an external MQTT broker.
type Config struct {
	Enabled bool   `yaml:"enabled" help:"cluster mode: take uplink from a NATS JetStream stream shared with other firewatch instances instead of MQTT (docs/cluster.md)"`
	URLs    string `yaml:"urls" help:"NATS client URLs of the cluster's nodes, comma-separated (nats://10.0.0.1:4222,nats://10.0.0.2:4222,...)"`
	// MQTT is where linkage commands and the console fan-out go in cluster
	// mode: the nodes' MQTT listeners.
	MQTT string `yaml:"mqtt" help:"MQTT URLs of the cluster's nodes (tcp://10.0.0.1:1883,...) for linkage commands (fw/v1/down/...) and the console fan-out; empty: neither is sent"`
	// Instance names this firewatch in NATS (connection name, logs).
	Instance   string        `yaml:"instance" help:"this instance's name in NATS and the logs (default: the host name)"`
	Partitions int           `yaml:"partitions" help:"number of partitions P of the uplink; must equal the P of the servers' subject mapping (docs/cluster.md)"`
	Stream     string        `yaml:"stream" help:"name of the JetStream stream that captures the partitioned uplink"`
	Replicas   int           `yaml:"replicas" help:"replicas of the stream and its consumers (3 for a 3-node cluster)"`
	MaxAge     time.Duration `yaml:"max_age" help:"the stream keeps a message at most this long, handled or not"`
	MaxMB      int           `yaml:"max_mb" help:"the stream keeps at most this many MB; beyond it the oldest messages go"`
	// Ownership and redelivery (docs/cluster.md, "Failover").
	PinnedTTL     time.Duration `yaml:"pinned_ttl" help:"a partition's owner that has not asked for messages this long loses it to another instance (the takeover time)"`
	AckWait       time.Duration `yaml:"ack_wait" help:"a message delivered and not acknowledged this long is delivered again (messages being handled are kept alive)"`
	MaxAckPending int           `yaml:"max_ack_pending" help:"messages of one partition delivered and not yet acknowledged at most"`
	// StateInterval is how often the owner of a partition checkpoints its
	// devices' rule state and liveness (state.go).
	StateInterval time.Duration `yaml:"state_interval" help:"how often each partition's owner writes its devices' rule state and liveness to the object store fw_state_{stream} (and at an orderly release), for the next owner; 0: never (a takeover forgets them)"`
	// Credentials and the auth callout (callout.go, docs/cluster.md
	// "Credentials"): firewatch's own user on the nodes, for NATS and for
	// its MQTT client, and the key that signs the devices' users.
	User     string `yaml:"user" help:"firewatch's service user on the NATS nodes (one of the auth callout's auth_users); empty: connect without credentials"`
	Password string `yaml:"password" help:"the service user's password" secret:"true"`
	// CalloutSeed is the file of the callout issuer's account nkey seed
	// (SA…); set, every instance answers the servers' authorization
	// requests for MQTT devices and gateways from the registry.
	CalloutSeed    string `yaml:"callout_seed" help:"file holding the auth callout issuer's account nkey seed (SA...); set: firewatch authorizes the devices and gateways connecting to the nodes (docs/cluster.md)"`
	CalloutAccount string `yaml:"callout_account" help:"the NATS account devices and gateways are placed in (the account of the stream and of the service user)"`
}

// Defaults of Config.
const (
	DefaultPartitions    = 16
	DefaultStream        = "FW_UPLINK"
	DefaultReplicas      = 3
	DefaultMaxAge        = 72 * time.Hour
	DefaultMaxMB         = 10 << 10
	DefaultPinnedTTL     = 2 * time.Second
	DefaultAckWait       = 3 * time.Second
	DefaultMaxAckPending = 1000
	DefaultStateInterval = 5 * time.Second
)

// DefaultConfig is the configuration with every default set, cluster mode off.
func DefaultConfig() Config {
	return Config{Partitions: DefaultPartitions, Stream: DefaultStream, Replicas: DefaultReplicas,
		MaxAge: DefaultMaxAge, MaxMB: DefaultMaxMB, PinnedTTL: DefaultPinnedTTL, AckWait: DefaultAckWait,
		MaxAckPending: DefaultMaxAckPending, StateInterval: DefaultStateInterval}
}

// Validate returns every problem with an enabled configuration.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if strings.TrimSpace(c.URLs) == "" {
		errs = append(errs, errors.New("cluster.urls: the NATS URLs are required in cluster mode"))
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("cluster.partitions: %d is not between 1 and 1024", c.Partitions))
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, ". *>") {
		errs = append(errs, fmt.Errorf("cluster.stream: %q is not a stream name (no '.', ' ', '*', '>')", c.Stream))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("cluster.replicas: %d is not between 1 and 5", c.Replicas))
	}
	if c.MaxAge <= 0 || c.MaxMB <= 0 {
		errs = append(errs, errors.New("cluster.max_age and cluster.max_mb must be positive"))
	}
	if c.PinnedTTL < time.Second {
		errs = append(errs, fmt.Errorf("cluster.pinned_ttl: %v is below 1s", c.PinnedTTL))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("cluster.ack_wait: %v is below 1s", c.AckWait))
	}
	if c.CalloutSeed != "" && (c.CalloutAccount == "" || c.User == "") {
		errs = append(errs, errors.New("cluster.callout_seed needs cluster.callout_account and cluster.user (the callout's auth user)"))
	}
	if c.StateInterval < 0 {
		errs = append(errs, errors.New("cluster.state_interval must not be negative (0: no checkpoints)"))
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, errors.New("cluster.max_ack_pending must be positive"))
	}
	return errors.Join(errs...)
}

// InstanceName is the instance's name: Instance, or the host name.
func (c *Config) InstanceName() string { return c.instance() }

func (c *Config) instance() string {
	if c.Instance != "" {
		return c.Instance
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "firewatch"
}
