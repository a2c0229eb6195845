package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fw.yaml")
	os.WriteFile(path, []byte("ledger: from-file.yaml\nmqtt:\n  broker: tcp://file:1883\ninflux:\n  flush_interval: 3s\nalarms:\n  secret: s-0123456789abcdef\n"), 0o600)
	c, err := loadConfig([]string{"-config", path, "-http.pprof", "-mqtt.broker", "tcp://flag:1883"}, env(map[string]string{
		"FIREWATCH_MQTT_BROKER": "tcp://env:1883", "FIREWATCH_INFLUX_BATCH_LINES": "77",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ledger != "from-file.yaml" || c.MQTT.Broker != "tcp://flag:1883" || c.Influx.BatchLines != 77 ||
		c.Influx.FlushInterval != 3*time.Second || c.HTTP.Listen != "127.0.0.1:9090" || !c.HTTP.Pprof {
		t.Fatalf("config = %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "alarms.secret: set a signing key"},
		{[]string{"-influx.flush_interval", "soon"}, nil, `influx.flush_interval: "soon" is not a duration`},
		{nil, map[string]string{"FIREWATCH_INFLUX_BATCH_LINES": "many"}, "FIREWATCH_INFLUX_BATCH_LINES"},
		{[]string{"-alarms.secret", "s", "-log.level", "loud"}, nil, `log.level: "loud"`},
		{[]string{"-alarms.secret", "short-secret"}, nil, "alarms.secret: at least 16 characters"},
		{[]string{"-no.such.key", "1"}, nil, "flag provided but not defined"},
	} {
		_, err := loadConfig(tt.args, env(tt.env))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v %v: err = %v, want %q", tt.args, tt.env, err, tt.want)
		}
	}
	path := filepath.Join(t.TempDir(), "fw.yaml")
	os.WriteFile(path, []byte("alarms:\n  secret: s\nmqtt:\n  borker: x\n"), 0o600)
	if _, err := loadConfig([]string{"-config", path}, env(nil)); err == nil || !strings.Contains(err.Error(), "fw.yaml:4: field borker not found") {
		t.Errorf("misspelt key: %v", err)
	}
}

// TestConfigDocumented keeps docs/config.md in step with Config.
func TestConfigDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	c := defaults()
	for _, f := range fields(&c) {
		if !strings.Contains(string(doc), "| `"+f.path+"` | `-"+f.path+"` | `"+envName(f.path)+"` |") {
			t.Errorf("docs/config.md has no row for %s", f.path)
		}
	}
}

func TestRulesCheck(t *testing.T) {
	var out, errb strings.Builder
	if code := cli([]string{"rules", "check", "../../rules/defaults.yaml"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "OK") {
		t.Fatalf("defaults: code %d, %s %s", code, out.String(), errb.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - {id: a, kind: smoke, event: smoke_alarm, severity: fire}\n  - {id: b, kind: hydrant, metric: pressure_mpa, below: 0.1, clear: 0.05, severity: alarm}\n"), 0o600)
	errb.Reset()
	if code := cli([]string{"rules", "check", bad}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "bad.yaml:3: rule \"b\": clear 0.05") {
		t.Fatalf("bad file: code %d, stderr %s", code, errb.String())
	}
}
