package cluster

import (
	"log/slog"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Kick closes the MQTT connections that the devices or gateways ids hold on
// any node (a device removed from the registry, or whose secret changed):
// it connects to the nodes' MQTT (cfg.MQTT) as the service user with each
// id as client id, which makes nats-server close the existing connection of
// that client id anywhere in the cluster (session takeover), and
// disconnects at once. The device's reconnect then meets the auth callout,
// which refuses it. It returns how many takeovers succeeded.
func Kick(cfg Config, ids []string, log *slog.Logger) int {
	var brokers []string
	for _, u := range strings.Split(cfg.MQTT, ",") {
		if u = strings.TrimSpace(u); u != "" {
			brokers = append(brokers, u)
		}
	}
	if len(brokers) == 0 {
		return 0
	}
	n := 0
	for _, id := range ids {
		o := mqtt.NewClientOptions().SetClientID(id).SetCleanSession(true).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetUsername(cfg.User).SetPassword(cfg.Password)
		for _, b := range brokers {
			o.AddBroker(b)
		}
		c := mqtt.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			if log != nil {
				log.Warn("registry change: could not close the connection of a removed device", "device", id, "err", tok.Error())
			}
			continue
		}
		c.Disconnect(0)
		n++
	}
	return n
}
