package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/firewatch-iot/firewatch/internal/buildinfo"
)

// helpText is `firewatch --help`, laid out like a man page because the
// packages install no other: the operator on a server reads it there.
const helpText = `NAME
    firewatch - fire-safety telemetry, rules and alarm dispatch (基层消防物联网监测)

SYNOPSIS
    firewatch [-config FILE] [-KEY VALUE ...]
    firewatch check [-config FILE] [-KEY VALUE ...]
    firewatch rules check FILE...
    firewatch hash-secret [-generate] < secret
    firewatch registry export [-KEY VALUE ...] > ledger.yaml
    firewatch registry import [-dry-run] FILE [-KEY VALUE ...]
    firewatch --version
    firewatch --help

DESCRIPTION
    firewatch ingests telemetry from electrical-fire monitors, smoke detectors,
    hydrant pressure sensors and e-bike charging cabinets over MQTT (its embedded
    broker, or an external one), evaluates the rules, writes the time series to
    InfluxDB (spooling to disk while InfluxDB is down) and pushes alarms from a
    durable outbox to micro fire stations (微型消防站) and the fire brigade.

COMMANDS
    (none)        run the service until SIGTERM or SIGINT, then flush and stop
    check         validate the configuration, the ledger and the rules, then exit
    rules check   validate rule files
    hash-secret   print the argon2id hash of a secret read from standard input,
                  for secret_hash in the ledger (-generate: make a random secret)
    registry      export the device registry in the store as a YAML ledger, or
                  import one into it (-dry-run: validate only); import is for a
                  store no firewatch runs on: a running one takes the admin API

OPTIONS
    Every configuration key is a flag named for its path and an environment
    variable FIREWATCH_<PATH>; flags win over the environment, which wins over
    the file, which wins over the defaults.

    -config FILE
        configuration file (YAML) (env FIREWATCH_CONFIG)
%s
EXIT STATUS
    0 stopped cleanly or check passed; 1 failed or check found problems;
    2 bad usage or configuration.

FILES
    /etc/firewatch/firewatch.yaml   configuration (Debian package)
    /etc/firewatch/firewatch.env    secrets as FIREWATCH_* variables, read by the systemd unit
    /etc/firewatch/devices.yaml     device and station ledger (台账)
    /var/lib/firewatch/alarms.db    alarm store and dispatch outbox (SQLite)
    /var/lib/firewatch/influx-spool readings waiting for InfluxDB
    /usr/share/firewatch/           Grafana dashboards and data source plugin, default rules
    /usr/share/doc/firewatch/       the documentation (install.md, config.md, ...)

SEE ALSO
    firegate(8) --help, systemctl status firewatch, journalctl -u firewatch,
    /usr/share/doc/firewatch/install.md, https://github.com/firewatch-iot/firewatch

VERSION
    %s
`

// help writes the man-style help with every configuration key.
func help(w io.Writer) {
	c := defaults()
	var b strings.Builder
	for _, f := range fields(&c) {
		def := fmt.Sprint(f.v.Interface())
		if f.secret {
			def = ""
		}
		fmt.Fprintf(&b, "    -%s\n        %s (env %s", f.path, f.help, envName(f.path))
		if def != "" {
			fmt.Fprintf(&b, ", default %s", def)
		}
		b.WriteString(")\n")
	}
	fmt.Fprintf(w, helpText, b.String(), buildinfo.String("firewatch"))
}

// wantsHelp reports whether args ask for help or the version: a flag
// anywhere, or the bare word as the command.
func wantsHelp(args []string) (help, version bool) {
	for i, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help" || i == 0 && a == "help":
			help = true
		case a == "-version" || a == "--version" || i == 0 && a == "version":
			version = true
		}
	}
	return help, version
}
