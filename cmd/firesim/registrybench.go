package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

// registryMemLimit is the soft memory limit the registry bench gives
// firewatch (GOMEMLIMIT), as docs/performance.md recommends for a million
// devices in 1 GiB.
const registryMemLimit = "900MiB"

// runRegistry measures firewatch with a registry of n devices (issue 18):
// how long from its start until /healthz answers, its CPU time until then,
// its peak and settled resident memory; started twice on the same data
// directory (the second start is a restart: with the registry in the store
// it reads the store, not the YAML ledger), with GOMEMLIMIT=900MiB.
func (b *bench) runRegistry(ctx context.Context, n int) (string, error) {
	e, err := sim.GenerateRegistry(sim.RegistryOptions{Devices: n, Endpoint: b.rcv.url, Seed: 1})
	if err != nil {
		return "", err
	}
	var y bytes.Buffer
	if err := sim.WriteRegistryYAML(&y, e, fmt.Sprintf("firesim bench -registry %d", n)); err != nil {
		return "", err
	}
	ledger := filepath.Join(b.dir, "registry.yaml")
	if err := os.WriteFile(ledger, y.Bytes(), 0o600); err != nil {
		return "", err
	}
	yamlMiB := float64(y.Len()) / (1 << 20)
	stations, gateways := len(e.Stations), len(e.Gateways)
	e, y = nil, bytes.Buffer{}
	db := "benchregistry"
	if err := influxQL(b.influxURL, "CREATE DATABASE "+db); err != nil {
		return "", err
	}
	type start struct {
		label                     string
		ready, cpu                float64 // seconds
		peak, settled, settledCap float64 // MiB
	}
	var rows []start
	for i, label := range []string{"first start", "restart"} {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", benchPort())
		args := []string{"-ledger", ledger, "-http.listen", httpAddr, "-influx.url", b.influxURL, "-influx.bucket", db + "/autogen",
			"-alarms.db", filepath.Join(b.dir, "registry.alarms.db"), "-alarms.secret", "bench-secret-0123456789",
			"-log.level", "warn", "-mqtt.listen", fmt.Sprintf("127.0.0.1:%d", benchPort()), "-http.pprof"}
		t0 := time.Now()
		fw, err := b.spawnEnv(filepath.Join(b.bin, "firewatch"), fmt.Sprintf("registry%d.firewatch.log", i), []string{"GOMEMLIMIT=" + registryMemLimit}, args...)
		if err != nil {
			return "", err
		}
		if err := waitHTTP(ctx, "http://"+httpAddr+"/healthz", 30*time.Minute); err != nil {
			stop(fw)
			return "", fmt.Errorf("firewatch: %w (log %s)", err, filepath.Join(b.dir, fmt.Sprintf("registry%d.firewatch.log", i)))
		}
		r := start{label: label, ready: time.Since(t0).Seconds(), cpu: cpuSeconds(fw), peak: procKiB(fw, "VmHWM:") / 1024}
		// Settled: after four collections through pprof, as -idle and -uitd measure.
		for range 4 {
			if resp, err := http.Get("http://" + httpAddr + "/debug/pprof/heap?gc=1"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		r.settled = procKiB(fw, "VmRSS:") / 1024
		stop(fw)
		rows = append(rows, r)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Registry scale, measured %s by `firesim bench -registry %d` (%s, %d cores, load average %s at the end): firewatch\n"+
		"started on a generated registry (`firesim registry`: %d devices, %d stations, %d gateways; a %.0f MiB YAML ledger) with\n"+
		"the embedded broker and its per-device credentials, the default rules and GOMEMLIMIT=%s, twice on the same data (the\n"+
		"restart reads the registry from the store where one is configured); ready is until /healthz answers, CPU is firewatch's\n"+
		"until then, peak is VmHWM, settled is VmRSS after four garbage collections.\n\n",
		time.Now().UTC().Format("2006-01-02"), n, cpuModel(), runtime.NumCPU(), loadAverage(), n, stations, gateways, yamlMiB, registryMemLimit)
	sb.WriteString("| devices | start | ready in | CPU to ready | peak RSS | settled RSS | settled per device |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %d | %s | %.1f s | %.1f s | %.0f MiB | %.0f MiB | %.0f B |\n", n, r.label, r.ready, r.cpu, r.peak, r.settled, r.settled*(1<<20)/float64(n))
	}
	return sb.String(), nil
}

// spawnEnv is spawn with extra environment variables.
func (b *bench) spawnEnv(name, logName string, env []string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(b.dir, logName))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.procs = append(b.procs, cmd)
	return cmd, nil
}

// procKiB reads a "Vm…:" line of a process's status, in KiB.
func procKiB(c *exec.Cmd, key string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb
		}
	}
	return 0
}

// loadAverage is the one-minute load average: the machine's other work
// shows in the times.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
