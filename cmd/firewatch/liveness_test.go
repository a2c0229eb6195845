package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// embeddedService runs firewatch with its embedded broker (credentials and
// ACLs on), a bridge credential for the test's publisher, and the dispatch
// receiver rcv. InfluxDB is not needed: its writes fail and are counted.
func embeddedService(t *testing.T, rcv *receiver, tune func(*Config)) (*service, string, string) {
	t.Helper()
	cfg := embeddedConfig(t, rcv)
	if tune != nil {
		tune(&cfg)
	}
	s, _ := runService(t, &cfg, slog.LevelError)
	return s, "tcp://" + cfg.MQTT.Listen, bridgeSecret
}

// bridgeSecret is the secret of embeddedConfig's bridge user "bridge".
const bridgeSecret = "bridge-secret"

// embeddedConfig is embeddedService's configuration, for a test that
// starts the service itself (and again, to test a restart).
func embeddedConfig(t *testing.T, rcv *receiver) Config {
	t.Helper()
	hash, err := broker.HashSecret([]byte(bridgeSecret))
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	cfg.Ledger = writeLedger(t, rcv.URL)
	cfg.MQTT.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.MQTT.BridgeUser, cfg.MQTT.BridgeSecretHash = "bridge", hash
	cfg.Influx.URL = fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	cfg.Influx.Timeout, cfg.Influx.ShutdownTimeout = 200*time.Millisecond, 200*time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.RetryMin = 50 * time.Millisecond
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Log.Level = "error"
	return cfg
}

func mqttClient(t *testing.T, url, id, user, pass string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func publish(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// nextPush waits for the next push to the receiver that satisfies match.
func (r *receiver) nextPush(t *testing.T, d time.Duration, what string, match func(map[string]any) bool) (map[string]any, time.Time) {
	t.Helper()
	deadline := time.After(d)
	seen := 0
	for {
		all := r.all()
		for _, p := range all[seen:] {
			if match(p.body) {
				return p.body, time.Now()
			}
		}
		seen = len(all)
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// TestOfflineThroughBroker: a device publishes through the real embedded
// broker, stops, is raised offline within its grace plus one tick, and is
// cleared when it returns. The devices API follows.
func TestOfflineThroughBroker(t *testing.T) {
	rcv := newReceiver(t)
	const heartbeat, tick = 500 * time.Millisecond, 100 * time.Millisecond
	s, url, secret := embeddedService(t, rcv, func(c *Config) {
		c.Liveness.Tick = tick
		c.Liveness.Electrical = heartbeat // grace 1 s; other kinds keep hours
	})
	c := mqttClient(t, url, "bridge", "bridge", secret)
	for i := range 3 {
		publish(t, c, "fw/v1/up/el-1/status", fmt.Sprintf(`{"seq":%d,"m":{"rssi_dbm":-85,"voltage_v":220}}`, i))
	}
	last := time.Now()
	isOffline := func(transition string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			dev, _ := b["device"].(map[string]any)
			return b["severity"] == "offline" && b["transition"] == transition && dev["id"] == "el-1"
		}
	}
	push, at := rcv.nextPush(t, 15*time.Second, "offline push", isOffline("raised"))
	grace := 2 * heartbeat
	// Raised no earlier than the grace, and (before delivery) within grace
	// plus one tick; the push itself adds the outbox's delivery time.
	if lat := at.Sub(last); lat < grace || lat > grace+tick+2*time.Second {
		t.Errorf("offline push %v after the last message, grace %v, tick %v", lat, grace, tick)
	}
	if push["rule"] != "electrical.offline" || push["severity_zh"] != "离线" {
		t.Errorf("push %v", push)
	}
	st := getDevice(t, s, "el-1")
	if st["online"] != false || st["rssi_dbm"] != -85.0 {
		t.Errorf("device status while offline: %v", st)
	}
	publish(t, c, "fw/v1/up/el-1/telemetry", `{"seq":9,"m":{"voltage_v":221}}`)
	rcv.nextPush(t, 10*time.Second, "cleared push", isOffline("cleared"))
	if st := getDevice(t, s, "el-1"); st["online"] != true {
		t.Errorf("device status after return: %v", st)
	}
}

func getDevice(t *testing.T, s *service, id string) map[string]any {
	t.Helper()
	resp, err := http.Get(s.httpURL() + "/api/v1/devices/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET device %s: %d %v", id, resp.StatusCode, err)
	}
	return m
}
