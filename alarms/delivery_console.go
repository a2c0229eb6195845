package alarms

import (
	"context"
	"encoding/json"
	"time"
)

// consoleQueue bounds the alarm updates waiting for the MQTT console
// fan-out. The fan-out is a convenience for consoles, not the dispatch
// path: when the broker is slow, updates beyond it are dropped and counted
// rather than holding up the alarm manager.
const consoleQueue = 1024

// ConsoleTopic is the MQTT topic of the alarm updates of one village, for
// consoles: fw/v1/alarms/{county}/{town}/{village}. Subscribe to
// fw/v1/alarms/450204/# for a county.
func ConsoleTopic(grid string) string {
	if len(grid) != 12 {
		return "fw/v1/alarms/unknown"
	}
	return "fw/v1/alarms/" + grid[:6] + "/" + grid[:9] + "/" + grid
}

// toConsole queues an alarm update for the fan-out, never blocking.
func (m *Manager) toConsole(a Alarm) {
	if m.console == nil {
		return
	}
	select {
	case m.console <- a:
	default:
		m.met.consoleDropped.Inc()
	}
}

// consoleLoop publishes alarm updates until ctx is done.
func (m *Manager) consoleLoop(ctx context.Context) {
	var lastErr time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-m.console:
			b, err := json.Marshal(a)
			if err != nil {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = m.cfg.Publish(pctx, ConsoleTopic(a.Grid), b)
			cancel()
			if err != nil {
				m.met.consoleDropped.Inc()
				if time.Since(lastErr) > 10*time.Second {
					lastErr = time.Now()
					m.log.Warn("console fan-out: publish failed (logged at most every 10 s)", "alarm", a.ID, "err", err)
				}
			}
		}
	}
}
