package main

import (
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/cluster"
)

// newClusterDownlink is the alarm manager's downlink in cluster mode (issue
// 15): a client of its own to the NATS nodes' MQTT listeners (cluster.mqtt),
// reconnecting to any of them, for linkage commands and the console
// fan-out. Nil (every publish fails as not connected) without cluster.mqtt.
func newClusterDownlink(c cluster.Config) *downlink {
	o := paho.NewClientOptions().
		SetClientID("firewatch-" + c.InstanceName() + "-downlink").
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second)
	if c.User != "" { // the service user, past the auth callout (cluster_auth.go)
		o.SetUsername(c.User).SetPassword(c.Password)
	}
	n := 0
	for _, u := range strings.Split(c.MQTT, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.AddBroker(u)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	cl := paho.NewClient(o)
	cl.Connect() // with ConnectRetry it keeps trying in the background
	return &downlink{c: cl}
}
