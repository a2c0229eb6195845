// Package buildinfo holds the version firewatch and firegate were built
// as, stamped at link time by `make build`, `make package` and `make release`:
//
//	go build -ldflags "-X github.com/firewatch-iot/firewatch/internal/buildinfo.version=v1.2.0-3-gabc1234 \
//	  -X github.com/firewatch-iot/firewatch/internal/buildinfo.revision=<full commit> \
//	  -X github.com/firewatch-iot/firewatch/internal/buildinfo.date=2026-12-01T09:00:00Z"
//
// A plain `go build` or `go test` leaves them empty; Version then falls back
// to what the Go toolchain recorded (the VCS revision, or the module
// version), or "devel". The version is what `--version`, /healthz, the
// firewatch_build_info metric, the first log line and firegate's status
// message report, so that an operator can tell what runs.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set by -ldflags -X (see the package comment and the Makefile's LDFLAGS).
var (
	version  string
	revision string
	date     string
)

// Version is the release version: the git tag the binary was built from
// (v1.2.0), `git describe` between tags (v1.2.0-3-gabc1234), a
// "-dirty" suffix for a tree with uncommitted changes; without stamping,
// the toolchain's record or "devel".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	rev, dirty := vcs(bi)
	switch {
	case rev != "" && dirty:
		return rev[:min(12, len(rev))] + "+dirty"
	case rev != "":
		return rev[:min(12, len(rev))]
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		return bi.Main.Version
	}
	return "devel"
}

// Revision is the full commit the binary was built from, or "unknown".
func Revision() string {
	if revision != "" {
		return revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if rev, _ := vcs(bi); rev != "" {
			return rev
		}
	}
	return "unknown"
}

// Date is the commit time of the build (RFC 3339, UTC; the commit's rather
// than the clock's, so that two builds of one commit are the same), or
// "unknown".
func Date() string {
	if date != "" {
		return date
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func vcs(bi *debug.BuildInfo) (rev string, dirty bool) {
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	return rev, dirty
}

// String is the one-line answer to `program --version`:
//
//	firewatch v1.2.0 (revision 0123abcd…, 2026-12-01T09:00:00Z, go1.26.0 linux/amd64)
func String(program string) string {
	return fmt.Sprintf("%s %s (revision %s, %s, %s %s/%s)", program, Version(), Revision(), Date(),
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Collector is the firewatch_build_info gauge: always 1, with the version,
// revision and Go version as labels (one series per binary), the
// Prometheus convention for joining a version onto other series.
func Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "firewatch_build_info",
		Help: "Always 1; the labels say which build runs (version from the git tag or commit).",
		ConstLabels: prometheus.Labels{
			"version": Version(), "revision": Revision(), "goversion": runtime.Version(),
		},
	})
	g.Set(1)
	return g
}
