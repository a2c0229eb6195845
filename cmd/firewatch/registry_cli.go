package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/registry"
)

// registryCommand implements `firewatch registry export` (the store's
// registry as a YAML ledger on standard output) and `firewatch registry
// import [-dry-run] FILE` (make the store's registry what FILE says; for a
// store no firewatch runs on: a running one takes changes through its API).
// Both take the configuration flags to find the store.
func registryCommand(args []string, stdout, stderr io.Writer) int {
	usage := func() int {
		fmt.Fprintln(stderr, "usage: firewatch registry export [-config FILE] > ledger.yaml\n       firewatch registry import [-dry-run] FILE [-config FILE]")
		return 2
	}
	if len(args) == 0 {
		return usage()
	}
	sub, rest := args[0], args[1:]
	dry := false
	if sub == "import" && len(rest) > 0 && (rest[0] == "-dry-run" || rest[0] == "--dry-run") {
		dry, rest = true, rest[1:]
	}
	var file string
	if sub == "import" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	if (sub != "export" && sub != "import") || (sub == "import" && file == "") {
		return usage()
	}
	cfgArgs := rest
	// Only the store's location matters here: a configuration that does
	// not validate for running (alarms.secret kept in the service's
	// environment file) still finds it.
	cfg, err := loadConfig(cfgArgs, os.Getenv)
	if cfg == nil {
		fmt.Fprintf(stderr, "config: %v\n", err)
		return 2
	}
	st, err := registry.Open(cfg.Registry.Location(cfg.Alarms.DB))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer st.Close()
	ctx := context.Background()
	if sub == "export" {
		if v, err := st.Version(ctx); err != nil || v == 0 {
			fmt.Fprintf(stderr, "registry export: the store holds no registry (%v)\n", err)
			return 1
		}
		e, err := st.Load(ctx)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		b, err := devices.MarshalEntries(e)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		stdout.Write(b)
		return 0
	}
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "registry import: %v\n", err)
		return 1
	}
	n, err := st.Import(ctx, "firewatch registry import", file, b, dry)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if dry {
		fmt.Fprintf(stdout, "OK (dry run): %d entries would change\n", n)
	} else {
		fmt.Fprintf(stdout, "OK: %d entries changed\n", n)
	}
	return 0
}

// checkLedger is the registry `firewatch check` validates: the ledger file
// as always, or, when there is none, the registry in the store (without
// changing the store: check writes nothing).
func checkLedger(cfg *Config) (*devices.Ledger, error) {
	l, err := devices.LoadLedger(cfg.Ledger)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return l, err
	}
	loc := cfg.Registry.Location(cfg.Alarms.DB)
	if _, serr := os.Stat(loc); !registry.IsPostgres(loc) && serr != nil {
		return nil, err // no store either: the ledger file's error
	}
	st, serr := registry.Open(loc)
	if serr != nil {
		return nil, errors.Join(err, serr)
	}
	defer st.Close()
	ctx := context.Background()
	if v, verr := st.Version(ctx); verr != nil || v == 0 {
		return nil, err
	}
	e, err := st.Load(ctx)
	if err != nil {
		return nil, err
	}
	return devices.Build(registry.LedgerName, e)
}
