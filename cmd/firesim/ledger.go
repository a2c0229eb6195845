package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

func cmdLedger(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ledger",
		"Write a demo ledger (台账): one micro fire station (微型消防站) per town and the\n"+
			"requested number of devices of all four kinds across 柳州市柳南区 450204, 温州市平阳县 330326,\n"+
			"重庆市丰都县 500230 and 上海市普陀区 310107. Town and village codes, names and addresses\n"+
			"are illustrative.",
		"  firesim ledger -devices 300 -endpoint http://127.0.0.1:8090 -o var/ledger.yaml\n"+
			"  firesim ledger -devices 20000 -o - | less\n",
		stderr)
	n := fs.Int("devices", sim.DefaultLedgerDevices, "number of devices")
	endpoint := fs.String("endpoint", sim.DefaultEndpoint, "base URL of the dispatch receiver; stations get <endpoint>/dispatch/<station id>")
	out := fs.String("o", "var/ledger.yaml", "output file, or - for standard output")
	seed := fs.Int64("seed", 1, "seed for addresses and coordinates")
	gateways := fs.Int("gateways", 0, "assign each village's devices to one of this many gateways (gw-001 …), for gateway batches")
	nb := fs.Int("nbiot", 0, "bind this many village smoke detectors to NB-IoT platforms (CTWing, OneNET) for 'firesim nbiot'")
	secretsOut := fs.String("secrets", "", "give each device a random secret: its hash in the ledger (secret_hash), the secrets in this file (mode 0600) for 'firesim run -secrets'")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n <= 0 {
		return fmt.Errorf("-devices %d: want at least 1", *n)
	}
	opts := sim.LedgerOptions{Devices: *n, Endpoint: *endpoint, Seed: *seed, Gateways: *gateways, NBIoT: *nb}
	var buf bytes.Buffer
	if err := sim.GenerateLedger(&buf, opts); err != nil {
		return err
	}
	if *secretsOut != "" {
		// The ids from a first pass, their secrets hashed on every core,
		// then the ledger again with the hashes (the same seed: the same
		// devices).
		l, err := devices.ParseLedger(*out, buf.Bytes())
		if err != nil {
			return fmt.Errorf("generated ledger does not load: %w", err)
		}
		ids := make([]string, len(l.Devices))
		for i := range l.Devices {
			ids[i] = l.Devices[i].ID
		}
		secrets, hashes, err := makeSecrets(ids)
		if err != nil {
			return err
		}
		opts.SecretHash = func(id string) string { return hashes[id] }
		buf.Reset()
		if err := sim.GenerateLedger(&buf, opts); err != nil {
			return err
		}
		if err := writeSecrets(*secretsOut, ids, secrets); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s: the secrets of %d devices\n", *secretsOut, len(ids))
	}
	// Load what we wrote: a ledger firewatch would reject is a bug here.
	l, err := devices.ParseLedger(*out, buf.Bytes())
	if err != nil {
		return fmt.Errorf("generated ledger does not load: %w", err)
	}
	if *out == "-" {
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s: %d devices (%s), %d micro fire stations, dispatch to %s/dispatch/{station}\n",
		*out, len(l.Devices), kindCounts(l), len(l.Stations), strings.TrimRight(*endpoint, "/"))
	return nil
}

// writeFileAtomic writes b to path through a temporary file, so that a
// running firewatch never reads half a ledger.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	f, err := os.CreateTemp(dir, ".ledger-*.yaml")
	if err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	defer os.Remove(f.Name()) // after a successful rename this fails harmlessly
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write ledger %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write ledger %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write ledger %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write ledger %s: %w", path, err)
	}
	return nil
}

func kindCounts(l *devices.Ledger) string {
	var count [devices.NumKinds]int
	for _, d := range l.Devices {
		count[d.Kind]++
	}
	var parts []string
	for k := devices.KindElectrical; k < devices.NumKinds; k++ {
		if count[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[k], k))
		}
	}
	return strings.Join(parts, ", ")
}
