package influx

import (
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// testLedger has one device of each kind, in two villages of 柳南区.
const testLedger = `
stations:
  - id: mfs-1
    name: 南站街道微型消防站
    grids: ["450204"]
    endpoint: http://127.0.0.1:1/dispatch
devices:
  - {id: el-0001, kind: electrical, grid: "450204001001"}
  - {id: sm-0002, kind: smoke, grid: "450204001002"}
  - {id: hy-0003, kind: hydrant, grid: "450204002003"}
  - {id: ch-0004, kind: charger, grid: "450204002003"}
`

func newTestLedger(t testing.TB) *devices.Ledger {
	t.Helper()
	l, err := devices.ParseLedger("test", []byte(testLedger))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func metric(t testing.TB, k devices.Kind, name string) devices.Metric {
	t.Helper()
	m, ok := devices.MetricByName(k, name)
	if !ok {
		t.Fatalf("no metric %s of kind %s", name, k)
	}
	return m
}
