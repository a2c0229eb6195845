// Command firewatch is the central service: it ingests fire-safety
// telemetry over MQTT, evaluates the rules, writes the time series to
// InfluxDB and pushes alarms to the dispatch channel (联勤联调) of micro fire
// stations. See README.md and docs/.
//
//	firewatch [-config firewatch.yaml] [-key value ...]   run the service
//	firewatch check [-config ...]                          validate config, ledger and rules, then exit
//	firewatch rules check FILE                             validate a rule file
//	firewatch hash-secret [-generate] < secret             argon2id hash for the ledger's secret_hash
//	firewatch push-key RECIPIENT... < alarms.secret         a dispatch receiver's signing key (docs/dispatch.md)
//	firewatch registry export | import [-dry-run] FILE       the registry in the store as a YAML ledger (docs/registry.md)
//	firewatch --version | --help                           the stamped version; the man-style help
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/firewatch-iot/firewatch/internal/buildinfo"
	"github.com/firewatch-iot/firewatch/pipeline"
	"github.com/firewatch-iot/firewatch/rules"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

func cli(args []string, stdout, stderr io.Writer) int {
	switch h, v := wantsHelp(args); {
	case v:
		fmt.Fprintln(stdout, buildinfo.String("firewatch"))
		return 0
	case h && !(len(args) > 0 && args[0] == "hash-secret"):
		help(stdout)
		return 0
	}
	switch {
	case len(args) >= 2 && args[0] == "rules" && args[1] == "check":
		return rulesCheck(args[2:], stdout, stderr)
	case len(args) >= 1 && args[0] == "check":
		return check(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "hash-secret":
		return hashSecret(args[1:], os.Stdin, stdout, stderr)
	case len(args) >= 1 && args[0] == "push-key":
		return pushKey(args[1:], os.Stdin, stdout, stderr)
	case len(args) >= 1 && args[0] == "registry": // registry_cli.go
		return registryCommand(args[1:], stdout, stderr)
	}
	cfg, err := loadConfig(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "firewatch: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	log.Info("firewatch starting", "version", buildinfo.Version(), "revision", buildinfo.Revision(), "config", configPath(args))
	s, err := newService(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "firewatch: %v\n", err)
		return 1
	}
	// Loading a large registry leaves garbage several times its size (a
	// YAML ledger's parse, the entries read from the store): return it to
	// the system now rather than at the runtime's pace, so that the
	// resident memory is what the registry holds (issue 18; a soft limit
	// is GOMEMLIMIT's, docs/performance.md).
	debug.FreeOSMemory()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.run(ctx); err != nil {
		log.Error("firewatch failed", "err", err)
		return 1
	}
	return 0
}

// version is the stamped version (internal/buildinfo).
func version() string { return buildinfo.Version() }

// configPath is the configuration file named by -config or
// FIREWATCH_CONFIG, for the first log line.
func configPath(args []string) string {
	for i, a := range args {
		if (a == "-config" || a == "--config") && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "-config="); ok {
			return v
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
	}
	return os.Getenv("FIREWATCH_CONFIG")
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level)) // validated by Config.Validate
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// check validates the configuration, the ledger and the rules, like
// promtool check config.
func check(args []string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "config: %v\n", err)
		return 1
	}
	l, err := checkLedger(cfg) // registry_cli.go: the ledger file, or the registry in the store without one
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	set, err := pipeline.LoadRules(cfg.Rules)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if _, err := rules.NewEngine(set, l); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := checkNBIoT(cfg, l); err != nil { // nbiot.go
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "OK: %d devices, %d stations, %d rules\n", len(l.Devices), len(l.Stations), len(set.Rules))
	return 0
}

// rulesCheck validates rule files without starting anything.
func rulesCheck(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "usage: firewatch rules check FILE...")
		return 2
	}
	code := 0
	for _, f := range files {
		set, err := rules.Load(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: OK, %d rules\n", f, len(set.Rules))
	}
	return code
}
