package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStamped(t *testing.T) {
	defer func(v, r, d string) { version, revision, date = v, r, d }(version, revision, date)
	version, revision, date = "v1.2.0-3-gabc1234", "abc1234def", "2026-12-01T09:00:00Z"
	if got := Version(); got != "v1.2.0-3-gabc1234" {
		t.Errorf("Version() = %q", got)
	}
	s := String("firewatch")
	if !strings.HasPrefix(s, "firewatch v1.2.0-3-gabc1234 (revision abc1234def, 2026-12-01T09:00:00Z, go") {
		t.Errorf("String() = %q", s)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	want := `# HELP firewatch_build_info Always 1; the labels say which build runs (version from the git tag or commit).
# TYPE firewatch_build_info gauge
firewatch_build_info{goversion="` + goVersion() + `",revision="abc1234def",version="v1.2.0-3-gabc1234"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "firewatch_build_info"); err != nil {
		t.Error(err)
	}
}

func TestUnstamped(t *testing.T) {
	defer func(v, r, d string) { version, revision, date = v, r, d }(version, revision, date)
	version, revision, date = "", "", ""
	if Version() == "" || Revision() == "" || Date() == "" {
		t.Errorf("unstamped build: Version %q, Revision %q, Date %q; want non-empty fallbacks", Version(), Revision(), Date())
	}
}

func goVersion() string { return runtime.Version() }
