package testenv

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"
)

// errExited is returned by waitReady when the service exits while starting.
var errExited = errors.New("exited while starting")

// process is one service binary. It can be stopped and started again with
// the same arguments; its output accumulates across runs.
type process struct {
	name string
	path string
	args []string
	out  *tailBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and its output is copied
	err  error         // exit status, valid after done
}

func newProcess(name, path string, args ...string) *process {
	return &process{name: name, path: path, args: args, out: &tailBuffer{max: 1 << 20}}
}

// start starts the binary. It does not wait for readiness.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.name)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = sysProcAttr()
	// Should a child of the service hold the output pipe, Wait still
	// returns shortly after the service itself exits.
	cmd.WaitDelay = 2 * time.Second
	fmt.Fprintf(p.out, "--- %s: starting %s %v\n", time.Now().Format(time.RFC3339Nano), p.path, p.args)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// exited returns a channel closed when the current run ends, or nil when
// the process is not running.
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// exitErr returns the exit status of the last run.
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop asks the service to shut down (SIGTERM to its process group, so
// that Mosquitto saves its persistence file and InfluxDB closes its WAL),
// and kills the group if it is still running after grace. It is a no-op
// when the process is not running.
func (p *process) stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	terminate(cmd)
	select {
	case <-done:
	case <-time.After(grace):
		fmt.Fprintf(p.out, "--- %s did not stop within %v: killing it\n", p.name, grace)
		kill(cmd)
		<-done
	}
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	fmt.Fprintf(p.out, "--- %s: stopped (%v)\n", time.Now().Format(time.RFC3339Nano), p.exitErr())
}

// output returns what the service wrote to stdout and stderr (the tail, if
// it wrote a lot).
func (p *process) output() string { return p.out.String() }

// tailBuffer is a concurrency-safe buffer that keeps roughly the last max
// bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*b.max {
		cut := len(b.buf) - b.max
		b.dropped += cut
		b.buf = append(b.buf[:0], b.buf[cut:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}
