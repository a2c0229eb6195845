package testenv

import (
	"runtime"
	"syscall"
	"testing"
)

// threadCPU returns the CPU time (ns) the calling thread has used.
func threadCPU() int64 {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if syscall.Getrusage(rusageThread, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// CPUMetric locks the benchmark to its thread and, when the returned
// function is called after the loop, reports the thread's CPU time per
// unit ("cpu-ns/<unit>"): on a machine shared with other work, wall time
// per op counts the time other processes ran, CPU time does not.
func CPUMetric(b *testing.B) func(units int, unit string) {
	runtime.LockOSThread()
	c0 := threadCPU()
	return func(units int, unit string) {
		c := threadCPU() - c0
		runtime.UnlockOSThread()
		if units > 0 && c > 0 {
			b.ReportMetric(float64(c)/float64(units), "cpu-ns/"+unit)
		}
	}
}
