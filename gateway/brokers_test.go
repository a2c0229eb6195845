package gateway_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/gateway"
)

// TestBrokerURLs: mqtt.brokers replaces mqtt.broker, which may itself list
// several brokers comma-separated; a malformed one is a configuration
// problem.
func TestBrokerURLs(t *testing.T) {
	for _, c := range []struct {
		broker  string
		brokers []string
		want    []string
	}{
		{"tcp://a:1883", nil, []string{"tcp://a:1883"}},
		{"tcp://a:1883, tcp://b:1883,", nil, []string{"tcp://a:1883", "tcp://b:1883"}},
		{"tcp://127.0.0.1:1883", []string{"tcp://n1:1883", " tcp://n2:1883 "}, []string{"tcp://n1:1883", "tcp://n2:1883"}},
	} {
		cfg := gateway.Defaults()
		cfg.MQTT.Broker, cfg.MQTT.Brokers = c.broker, c.brokers
		if got := cfg.BrokerURLs(); !slices.Equal(got, c.want) {
			t.Errorf("broker %q brokers %q: %q, want %q", c.broker, c.brokers, got, c.want)
		}
	}
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"n1:1883"}, {"tcp://n1:1883", "http://n2"}, {" , "}} {
		cfg := gateway.Defaults()
		cfg.GatewayID, cfg.Spool.Dir = "gw-1", t.TempDir()
		cfg.MQTT.Broker, cfg.MQTT.Brokers = strings.Join(bad, ","), nil
		if err := cfg.Validate(maps); err == nil || !strings.Contains(err.Error(), "mqtt.broker") {
			t.Errorf("brokers %q: %v, want a problem with mqtt.broker", bad, err)
		}
	}
}
