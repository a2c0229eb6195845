//go:build !linux

package testenv

import "testing"

// CPUMetric reports nothing where the thread's CPU time is not read (see
// cputime_linux.go).
func CPUMetric(b *testing.B) func(units int, unit string) {
	return func(int, string) {}
}
