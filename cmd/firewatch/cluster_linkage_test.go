package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestClusterLinkage is TestLinkage in cluster mode: the cabinet's
// telemetry reaches firewatch through the NATS cluster's MQTT and stream,
// the cut_power command goes out through the nodes' MQTT (cluster.mqtt) to
// the cabinet connected to another node, and its acknowledgement comes back
// through the stream and is recorded on the alarm.
func TestClusterLinkage(t *testing.T) {
	const parts = 4
	nc := testenv.StartNATSCluster(t, cluster.ServerMappings(parts))
	rcv := newReceiver(t)
	cfg := defaults()
	cfg.Ledger = writeLedger(t, rcv.URL)
	cfg.Cluster.Enabled, cfg.Cluster.URLs, cfg.Cluster.Partitions, cfg.Cluster.Instance = true, nc.URLs(), parts, "solo"
	var mqttURLs []string
	for _, n := range nc.Nodes {
		mqttURLs = append(mqttURLs, n.MQTT)
	}
	cfg.Cluster.MQTT = strings.Join(mqttURLs, ",")
	cfg.Cluster.MaxMB = 256
	cfg.Influx.URL = "http://127.0.0.1:1" // not needed here; writes queue and are dropped
	cfg.Influx.ShutdownTimeout = 100 * time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.CommandRetry = time.Second
	cfg.HTTP.Listen = "127.0.0.1:0"
	s, _ := runService(t, &cfg, slog.LevelWarn)

	// The charging cabinet ch-1, on node 3: acknowledges every command.
	var (
		mu       sync.Mutex
		commands []map[string]any
	)
	cab := paho.NewClient(paho.NewClientOptions().AddBroker(nc.Nodes[2].MQTT).SetClientID("ch-1"))
	if tok := cab.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("cabinet connect: %v", tok.Error())
	}
	t.Cleanup(func() { cab.Disconnect(100) })
	tok := cab.Subscribe("fw/v1/down/ch-1/command", 1, func(c paho.Client, m paho.Message) {
		var cmd map[string]any
		if err := json.Unmarshal(m.Payload(), &cmd); err != nil {
			t.Errorf("command is not JSON: %s", m.Payload())
			return
		}
		id, _ := cmd["id"].(string)
		mu.Lock()
		commands = append(commands, cmd)
		mu.Unlock()
		c.Publish("fw/v1/up/ch-1/ack", 1, false, fmt.Sprintf(`{"id":%q,"ok":true,"ts":%d}`, id, time.Now().UnixMilli()))
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("cabinet subscribe: %v", tok.Error())
	}

	pub := newPublisher(t, nc.Nodes[0].MQTT)
	pub.json("fw/v1/up/ch-1/telemetry", map[string]any{"ts": time.Now().UnixMilli(), "seq": 1, "ch": 3,
		"m": map[string]any{"slot_temp_c": 82.0}})

	testenv.WaitFor(t, 30*time.Second, "cut_power acknowledged", func() bool {
		var list struct{ Alarms []alarms.Alarm }
		getJSON(t, s.httpURL()+"/api/v1/alarms?device=ch-1", &list)
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
	mu.Lock()
	defer mu.Unlock()
	for _, cmd := range commands {
		if cmd["cmd"] != "cut_power" || cmd["ch"] != 3.0 {
			t.Errorf("command %v", cmd)
		}
	}
}
