package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestAgainstFirewatchProcess runs the plugin against a real firewatch
// process, built from cmd/firewatch and started with its embedded broker and
// no API tokens, so that /healthz and the devices API are the real ones (the
// in-process tests serve stand-ins for them).
func TestAgainstFirewatchProcess(t *testing.T) {
	url := testenv.StartFirewatch(t, "../../../..").URL

	ds := newDS(t, url, "")
	res, err := ds.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil || res.Status != backend.HealthStatusOk || !strings.Contains(res.Message, "4 devices") {
		t.Errorf("health: %v %+v", err, res)
	}
	f := run(t, ds, map[string]any{"queryType": "devices", "grid": "450204"})
	if got := fmt.Sprint(column(t, f, "id")); got != "[el-1 sm-1 hy-1 ch-1]" {
		t.Errorf("devices %s", got)
	}
	f = run(t, ds, map[string]any{"queryType": "grid", "level": "town"})
	if got := column(t, f, "grid"); fmt.Sprint(got) != "[450204002]" {
		t.Errorf("grid %v", got)
	}
	if got := column(t, f, "devices"); got[0] != "4" {
		t.Errorf("grid devices %v", got)
	}
	f = run(t, ds, map[string]any{"queryType": "alarms", "state": "open"})
	if f.Rows() != 0 {
		t.Errorf("%d open alarms in a fresh firewatch", f.Rows())
	}
	f = run(t, ds, map[string]any{"queryType": "stats"})
	if f.Rows() != 0 {
		t.Errorf("stats of no alarms: %d rows", f.Rows())
	}
}
