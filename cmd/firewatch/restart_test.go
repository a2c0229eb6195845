package main

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// Defect 10, through the service: an alarm open when firewatch stops clears
// when its condition ends after the restart (the checkpoint restored the
// rule's state). Before the fix the new engine started empty and the clear
// never came.
func TestRuleStateAcrossRestart(t *testing.T) {
	rcv := newReceiver(t)
	cfg := embeddedConfig(t, rcv)
	_, stop := runService(t, &cfg, slog.LevelError)
	url := "tcp://" + cfg.MQTT.Listen
	c := mqttClient(t, url, "bridge", "bridge", bridgeSecret)
	now := time.Now().UnixMilli()
	// Below 0.10 MPa for 60 s (device time): hydrant.pressure.low_alarm.
	publish(t, c, "fw/v1/up/hy-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":1,"m":{"pressure_mpa":0.05}}`, now-61_000))
	publish(t, c, "fw/v1/up/hy-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":2,"m":{"pressure_mpa":0.05}}`, now-1_000))
	isLow := func(transition string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			return b["rule"] == "hydrant.pressure.low_alarm" && b["transition"] == transition
		}
	}
	rcv.nextPush(t, 15*time.Second, "low pressure raised", isLow("raised"))
	c.Disconnect(0)
	// Restart: the same configuration, the same store and state file.
	stop()
	runService(t, &cfg, slog.LevelError)
	c2 := mqttClient(t, url, "bridge", "bridge", bridgeSecret)
	publish(t, c2, "fw/v1/up/hy-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":3,"m":{"pressure_mpa":0.30}}`, now+1_000))
	rcv.nextPush(t, 15*time.Second, "low pressure cleared after the restart", isLow("cleared"))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
