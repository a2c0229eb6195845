package testenv

import (
	"os/exec"
	"testing"
)

// Chromium returns the path of a Chromium (or Chrome) browser for tests
// that drive one headless (chromedp), or skips the test when there is
// none; under CI=true a missing browser fails it (.ci/run installs
// Debian's chromium).
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Skip(t, "no chromium on PATH (apt-get install chromium): the browser tests of the responder page and the console need one")
	return ""
}
