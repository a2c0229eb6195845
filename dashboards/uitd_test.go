package dashboards

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// withUITD returns the firewatch flags that add one UITD (GB/T 26875.3) to the test ledger and open the
// endpoint, so that the per-UITD metrics of the 查岗 考核 panel (firewatch_gb26875_inspection*) exist.
func withUITD(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ledger := string(b)
	if !strings.Contains(ledger, "\ndevices:\n") || strings.Contains(ledger, "\nuitds:") {
		t.Fatal("devices/testdata/ledger.yaml: want a devices: section and no uitds:")
	}
	ledger = strings.Replace(ledger, "\ndevices:\n", "\ndevices:\n"+
		"  - {id: uitd-dash, kind: facility, grid: \"450204002003\", address: 测试大厦 消防控制室, unit: 测试物业}\n", 1)
	ledger += "\nuitds:\n  - {address: \"010203040506\", device: uitd-dash}\n"
	path := filepath.Join(t.TempDir(), "ledger.yaml")
	if err := os.WriteFile(path, []byte(ledger), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-ledger", path, "-gb26875.listen", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
}
