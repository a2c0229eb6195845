// Command firesim is firewatch's simulated fleet: it writes a demo ledger,
// publishes realistic device messages with incident scenarios to an MQTT
// broker, and receives dispatch pushes as a 联勤联调 platform would.
//
//	firesim ledger   -devices 300 -o var/ledger.yaml
//	firesim run      -broker tcp://127.0.0.1:1883 -ledger var/ledger.yaml -scenario fire:450204002003
//	firesim receiver -addr 127.0.0.1:8090 -secret …
//	firesim modbus   -link /tmp/ttyFW0 -fault 2=noanswer
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `firesim — simulated firewatch devices, incident scenarios and a dispatch receiver

Usage:
  firesim ledger   [flags]   write a demo ledger (台账) of devices and micro fire stations
  firesim registry [flags]   write a registry of many devices (YAML ledger, CSV) for scale tests
  firesim run      [flags]   publish the simulated fleet to an MQTT broker, with scenarios
  firesim receiver [flags]   receive and verify dispatch pushes (联勤联调 webhook)
  firesim modbus   [flags]   Modbus RTU slaves on a pseudo-terminal for firegate, with faults
  firesim load     [flags]   a paced, bounded stream of normal readings for throughput tests
  firesim bench    [flags]   make bench: real Mosquitto, InfluxDB and firewatch at rising loads
  firesim nullsub  [flags]   a do-nothing MQTT subscriber: the I/O baseline of the bench
  firesim nbiot    [flags]   NB-IoT smoke detectors reporting through emulated CTWing / OneNET pushes
  firesim uitd     [flags]   a building's GB/T 26875.3 UITD (用户信息传输装置) reporting a fire alarm
  firesim nkey     [flags]   an account nkey for cluster mode's auth callout (make cluster)

Run 'firesim <command> -h' for the flags of a command.

A demo, in three terminals:
  firesim ledger -o var/ledger.yaml
  FIREWATCH_DISPATCH_SECRET=devsecret firesim receiver
  firesim run -ledger var/ledger.yaml -scenario fire:450204002003
`

// errUsage means the command line was wrong and the usage has been printed.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := firesim(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// firesim runs one subcommand and returns the exit status: 0 done, 1 failed,
// 2 bad command line.
func firesim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "registry":
		err = cmdRegistry(args[1:], stdout, stderr)
	case "ledger":
		err = cmdLedger(args[1:], stdout, stderr)
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "receiver":
		err = cmdReceiver(ctx, args[1:], stdout, stderr)
	case "modbus":
		err = cmdModbus(ctx, args[1:], stdout, stderr)
	case "load":
		err = cmdLoad(ctx, args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(ctx, args[1:], stdout, stderr)
	case "uitd":
		err = cmdUITD(ctx, args[1:], stdout, stderr)
	case "nullsub":
		err = cmdNullSub(ctx, args[1:], stdout, stderr)
	case "nbiot":
		err = cmdNBIoT(ctx, args[1:], stdout, stderr) // nbiot.go
	case "nkey":
		err = cmdNKey(args[1:], stdout, stderr) // secrets.go
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "firesim: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "firesim %s: %v\n", args[0], err)
	return 1
}

// newFlags returns a flag set whose -h prints the command's description,
// its flags and examples.
func newFlags(name, synopsis, examples string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("firesim "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: firesim %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
		if examples != "" {
			fmt.Fprintf(stderr, "\nExamples:\n%s", examples)
		}
	}
	return fs
}

// parseFlags parses args and rejects positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// envOr returns the environment variable name if the flag value v is empty.
func envOr(v, name string) string {
	if v != "" {
		return v
	}
	return os.Getenv(name)
}
