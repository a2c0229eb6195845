package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// firesim registry writes a YAML ledger firewatch loads and a CSV under the
// template's headers, one row per device.
func TestCmdRegistry(t *testing.T) {
	dir := t.TempDir()
	y, c := filepath.Join(dir, "r.yaml"), filepath.Join(dir, "r.csv")
	var stderr bytes.Buffer
	if err := cmdRegistry([]string{"-devices", "500", "-o", y, "-csv", c}, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatal(err, stderr.String())
	}
	l, err := devices.LoadLedger(y)
	if err != nil || l.Len() != 500 {
		t.Fatalf("ledger: %v", err)
	}
	b, err := os.ReadFile(c)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 501 || !strings.HasPrefix(lines[0], "设备编号,设备类型,型号,行政区划代码,地址,经度,纬度,责任单位,责任人,联系电话,微型消防站,网关") {
		t.Fatalf("CSV: %d lines, header %q", len(lines), lines[0])
	}
}
