//go:build !linux

package rules

import "testing"

// cpuMetric reports nothing where the thread's CPU time is not read (see
// cputime_linux_test.go).
func cpuMetric(b *testing.B) func(units int, unit string) {
	return func(int, string) {}
}
