package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Required reports whether missing services must fail tests rather than skip
// them: true when the environment variable CI is "true".
func Required() bool { return os.Getenv("CI") == "true" }

// Skip skips the test with the formatted reason, or fails it when Required.
// Every "service missing" path of this package goes through it, and tests
// with their own preconditions should too.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("CI=true, so a missing service is an error: "+format, args...)
	}
	t.Skipf(format, args...)
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. It
// never returns the same port twice within one test binary, so that two
// services started by one test cannot collide; another process may still
// take the port before the service binds it, which the Start functions
// detect.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		seen := ports[port]
		ports[port] = true
		portsMu.Unlock()
		if !seen {
			return port
		}
	}
	t.Fatalf("free port: the kernel keeps returning ports this test binary already used")
	return 0
}

// RepoRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (a test runs in its package
// directory) and, failing that, from this source file.
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("no go.mod above the working directory")
}

// findBinary returns the first candidate that is an executable file, then
// name looked up in PATH, then name in the extra directories.
func findBinary(name string, candidates []string, dirs ...string) (string, bool) {
	for _, c := range candidates {
		if isExec(c) {
			return c, true
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExec(p) {
			return p, true
		}
	}
	return "", false
}

func isExec(path string) bool {
	if path == "" {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// WaitFor polls cond until it holds, failing the test after d: the way
// tests wait for a condition that has no signal of its own.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // the polling interval, not synchronisation
	}
}
