package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestClusterCredentials is TestClusterLinkage with the nodes' auth
// callout on (cluster.callout_seed, docs/cluster.md "Credentials"): a
// charging cabinet added to the service's live registry with a secret
// connects at once with it, its overheating telemetry raises the alarm,
// the cut_power command reaches it through firewatch's MQTT client (the
// service user) and its acknowledgement comes back; removed from the
// registry, its connection is closed and it is refused at its next CONNECT;
// a wrong secret always is.
func TestClusterCredentials(t *testing.T) {
	const parts = 4
	nc := testenv.StartNATSCluster(t, cluster.ServerMappings(parts), testenv.WithAuthCallout())
	rcv := newReceiver(t)
	cfg := defaults()
	cfg.Ledger = writeLedger(t, rcv.URL)
	cfg.Cluster.Enabled, cfg.Cluster.URLs, cfg.Cluster.Partitions, cfg.Cluster.Instance = true, nc.URLs(), parts, "solo"
	cfg.Cluster.User, cfg.Cluster.Password = nc.Callout.User, nc.Callout.Password
	cfg.Cluster.CalloutSeed, cfg.Cluster.CalloutAccount = nc.Callout.SeedFile, nc.Callout.Account
	var mqttURLs []string
	for _, n := range nc.Nodes {
		mqttURLs = append(mqttURLs, n.MQTT)
	}
	cfg.Cluster.MQTT = strings.Join(mqttURLs, ",")
	cfg.Cluster.MaxMB = 256
	cfg.Influx.URL = "http://127.0.0.1:1" // not needed here
	cfg.Influx.ShutdownTimeout = 100 * time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.CommandRetry = time.Second
	cfg.HTTP.Listen = "127.0.0.1:0"
	s, _ := runService(t, &cfg, slog.LevelWarn)

	hash, err := broker.HashSecret([]byte("ch9-secret"))
	if err != nil {
		t.Fatal(err)
	}
	ch9 := devices.DeviceEntry{ID: "ch-9", Kind: "charger", Model: "CC-10", Grid: "450204002003",
		Address: "鹅山小区2号车棚", Station: "st-tanxi", SecretHash: hash}
	connect := func(node int, pass string) (paho.Client, error) {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(nc.Nodes[node].MQTT).SetClientID("ch-9").
			SetUsername("ch-9").SetPassword(pass).SetAutoReconnect(false))
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return nil, fmt.Errorf("connect timed out")
		}
		return c, tok.Error()
	}
	if _, err := connect(0, "ch9-secret"); err == nil {
		t.Fatal("ch-9 connected before it is in the registry")
	}
	if _, _, err := s.registry.Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{ch9}}); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(1, "wrong"); err == nil {
		t.Fatal("ch-9 connected with a wrong secret")
	}
	cab, err := connect(2, "ch9-secret")
	if err != nil {
		t.Fatalf("ch-9 added to the registry: %v", err)
	}
	t.Cleanup(func() { cab.Disconnect(100) })
	tok := cab.Subscribe("fw/v1/down/ch-9/command", 1, func(c paho.Client, m paho.Message) {
		var cmd struct{ ID, Cmd string }
		if err := json.Unmarshal(m.Payload(), &cmd); err != nil || cmd.Cmd != "cut_power" {
			t.Errorf("command %s", m.Payload())
			return
		}
		c.Publish("fw/v1/up/ch-9/ack", 1, false, fmt.Sprintf(`{"id":%q,"ok":true,"ts":%d}`, cmd.ID, time.Now().UnixMilli()))
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("cabinet subscribe: %v", tok.Error())
	}
	tok = cab.Publish("fw/v1/up/ch-9/telemetry", 1, false, fmt.Sprintf(`{"ts":%d,"seq":1,"ch":3,"m":{"slot_temp_c":82.0}}`, time.Now().UnixMilli()))
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("telemetry: %v", tok.Error())
	}
	testenv.WaitFor(t, 30*time.Second, "cut_power acknowledged", func() bool {
		var list struct{ Alarms []alarms.Alarm }
		getJSON(t, s.httpURL()+"/api/v1/alarms?device=ch-9", &list)
		for _, a := range list.Alarms {
			if a.Action != "cut_power" {
				continue
			}
			var full alarms.Alarm
			getJSON(t, s.httpURL()+"/api/v1/alarms/"+a.ID, &full)
			if len(full.Commands) == 1 && full.Commands[0].State == alarms.CommandAcked {
				return true
			}
		}
		return false
	})

	// Removed while connected: its connection is closed (Kick: a session
	// takeover by firewatch's service user), its reconnect refused.
	if _, _, err := s.registry.Apply(&devices.Change{DeleteDevices: []string{"ch-9"}}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 15*time.Second, "the removed cabinet's connection closed", func() bool { return !cab.IsConnectionOpen() })
	if c, err := connect(0, "ch9-secret"); err == nil {
		c.Disconnect(0)
		t.Fatal("ch-9 connected after its removal from the registry")
	}
}
