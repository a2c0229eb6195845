package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syscallCounter counts every system call of some processes (all threads)
// with `perf stat -e raw_syscalls:sys_enter`, a kernel counter that does not
// stop the process as strace does. Without perf, or where the kernel refuses
// the tracepoint, it counts nothing and reports -1.
type syscallCounter struct {
	cmds  []*exec.Cmd
	files []string
}

// countSyscalls starts a counter for each of procs (nil entries count
// nothing).
func (b *bench) countSyscalls(name string, procs ...*exec.Cmd) *syscallCounter {
	sc := &syscallCounter{cmds: make([]*exec.Cmd, len(procs)), files: make([]string, len(procs))}
	perf, err := exec.LookPath("perf")
	if err != nil {
		return sc
	}
	for i, p := range procs {
		if p == nil || p.Process == nil {
			continue
		}
		f := filepath.Join(b.dir, fmt.Sprintf("%s.%d.perf", name, i))
		c := exec.Command(perf, "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", strconv.Itoa(p.Process.Pid), "-o", f)
		if c.Start() == nil {
			sc.cmds[i], sc.files[i] = c, f
		}
	}
	time.Sleep(200 * time.Millisecond) // perf attaches: nothing signals it
	return sc
}

// stop ends the counters and returns their counts, -1 where none.
func (sc *syscallCounter) stop() []int64 {
	out := make([]int64, len(sc.cmds))
	for i, c := range sc.cmds {
		out[i] = -1
		if c == nil {
			continue
		}
		c.Process.Signal(syscall.SIGINT)
		c.Wait()
		raw, err := os.ReadFile(sc.files[i])
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Split(line, ","); len(f) >= 3 && strings.HasPrefix(f[2], "raw_syscalls:sys_enter") {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					out[i] = n
				}
			}
		}
	}
	return out
}
