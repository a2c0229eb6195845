// Command firegate is the edge gateway (边缘网关): it polls RS-485 Modbus RTU
// devices by register maps, spools every reading on local disk and forwards
// them to firewatch over MQTT, replaying in order after an outage.
//
//	firegate -config /etc/firegate/firegate.yaml
//	firegate check -config /etc/firegate/firegate.yaml
//	firegate maps            # list the shipped register maps
//	firegate --version       # the stamped version; --help: the man-style help
//	kill -HUP $(pidof firegate)  # reload the configuration
//
// docs/gateway.md describes the configuration and how to write a register map.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SIGHUP reloads the configuration instead of ending the process (its
	// default action), so an operator's "reload" cannot take the gateway
	// down.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, hup)
	stop()
	os.Exit(code)
}

// load reads the configuration and the register maps it names, and
// validates them.
func load(path string) (gateway.Config, gateway.Maps, error) {
	maps, err := gateway.ShippedMaps()
	if err != nil {
		return gateway.Config{}, nil, fmt.Errorf("shipped maps: %w", err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err == nil {
		err = maps.LoadMaps(cfg.Maps)
	}
	if err == nil {
		err = cfg.Validate(maps)
	}
	return cfg, maps, err
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, hup <-chan os.Signal) int {
	cmd := "run"
	if len(args) > 0 && (args[0] == "check" || args[0] == "maps") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("firegate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "/etc/firegate/firegate.yaml", "configuration file")
	level := fs.String("log.level", "info", "log level: debug, info, warn, error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { fmt.Fprintf(stdout, helpText, buildinfo.String("firegate")) }
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, buildinfo.String("firegate"))
		return 0
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "firegate: -log.level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if cmd == "run" {
		log.Info("firegate starting", "version", buildinfo.Version(), "revision", buildinfo.Revision(), "config", *config)
	}
	if cmd == "maps" {
		maps, err := gateway.ShippedMaps()
		if err != nil {
			fmt.Fprintf(stderr, "firegate: shipped maps: %v\n", err)
			return 1
		}
		names := make([]string, 0, len(maps))
		for n := range maps {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stdout, "%-10s %-10s %2d points, %d reads per poll\n", n, maps[n].Kind, len(maps[n].Points), len(maps[n].Blocks))
		}
		return 0
	}
	cfg, maps, err := load(*config)
	if err != nil {
		fmt.Fprintf(stderr, "firegate: %v\n", err)
		return 1
	}
	if cmd == "check" {
		fmt.Fprintf(stdout, "%s: OK (%d buses)\n", *config, len(cfg.Buses))
		return 0
	}
	for {
		g, err := gateway.New(cfg, maps, log)
		if err != nil {
			fmt.Fprintf(stderr, "firegate: %v\n", err)
			return 1
		}
		log.Info("firegate running", "gateway", cfg.GatewayID, "brokers", strings.Join(cfg.BrokerURLs(), ","), "buses", len(cfg.Buses))
		gctx, stopGateway := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- g.Run(gctx) }()
	wait:
		for {
			select {
			case err := <-done:
				stopGateway()
				if err != nil {
					fmt.Fprintf(stderr, "firegate: %v\n", err)
					return 1
				}
				return 0
			case <-hup:
				next, nextMaps, err := load(*config)
				if err != nil {
					log.Error("reload: configuration invalid; keeping the running one", "config", *config, "err", err)
					continue
				}
				log.Info("reload: restarting with the new configuration", "config", *config)
				cfg, maps = next, nextMaps
				break wait
			}
		}
		// Stop pollers and forwarder in order (the spool is closed and
		// reopened by the new gateway; nothing spooled is lost).
		stopGateway()
		if err := <-done; err != nil {
			fmt.Fprintf(stderr, "firegate: %v\n", err)
			return 1
		}
	}
}

// helpText is `firegate --help`, laid out like a man page because the
// package installs no other.
const helpText = `NAME
    firegate - edge gateway (边缘网关): Modbus RTU polling, local spool, MQTT uplink to firewatch

SYNOPSIS
    firegate [-config FILE] [-log.level LEVEL]
    firegate check [-config FILE]
    firegate maps
    firegate --version
    firegate --help

DESCRIPTION
    firegate polls RS-485 Modbus RTU devices (electrical-fire monitors, hydrant
    pressure sensors, charging cabinets) by register maps, writes every reading
    to an on-disk spool first, and forwards the spool to firewatch over MQTT
    QoS 1, in order and with sequence numbers, replaying after an uplink outage.
    It runs linkage commands (cut_power) that firewatch sends down.

COMMANDS
    (none)   run until SIGTERM or SIGINT; what is unsent stays spooled.
             SIGHUP reloads the configuration (an invalid one is refused and
             the running one kept; nothing spooled is lost)
    check    validate the configuration and the register maps, then exit
    maps     list the register maps built in

OPTIONS
    -config FILE
        configuration file (default /etc/firegate/firegate.yaml)
    -log.level LEVEL
        debug, info, warn or error (default info)
    -version
        print the version and exit

EXIT STATUS
    0 stopped cleanly or check passed; 1 failed or check found problems; 2 bad usage.

FILES
    /etc/firegate/firegate.yaml   configuration (Debian package; docs/gateway.md explains every key)
    /etc/firegate/maps/           extra register maps
    /var/lib/firegate/spool       readings not yet acknowledged by the broker

SEE ALSO
    firewatch --help, systemctl status firegate, journalctl -u firegate,
    /usr/share/doc/firegate/gateway.md, /usr/share/doc/firegate/install.md

VERSION
    %s
`
