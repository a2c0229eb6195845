package main

import (
	"bytes"
	"fmt"
	"io"

	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

func cmdRegistry(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("registry",
		"Write a registry of many devices for scale tests (issue 18): the four sensor kinds in a\n"+
			"realistic mix, about 120 per village, 15 villages per town with one micro fire station per\n"+
			"town, gateways of 16 electrical-fire monitors or charging cabinets, NB-IoT smoke detectors\n"+
			"and secret hashes of the right form (random: no secret opens them). As a YAML ledger (-o) and\n"+
			"as a CSV of the spreadsheet template's devices sheet (-csv; stations, gateways and places are\n"+
			"in the YAML). Codes below the county, names and addresses are illustrative.",
		"  firesim registry -devices 1000000 -o var/registry.yaml -csv var/registry.csv\n",
		stderr)
	n := fs.Int("devices", 200000, "number of devices")
	endpoint := fs.String("endpoint", sim.DefaultEndpoint, "base URL of the dispatch receiver; stations get <endpoint>/dispatch/<station id>")
	out := fs.String("o", "var/registry.yaml", "YAML ledger to write, - for standard output, or empty for none")
	csvOut := fs.String("csv", "", "CSV of the devices to write, or empty for none")
	seed := fs.Int64("seed", 1, "seed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	e, err := sim.GenerateRegistry(sim.RegistryOptions{Devices: *n, Endpoint: *endpoint, Seed: *seed})
	if err != nil {
		return err
	}
	if *out != "" {
		var buf bytes.Buffer
		if err := sim.WriteRegistryYAML(&buf, e, fmt.Sprintf("firewatch registry of %d devices, written by firesim registry -seed %d.\n"+
			"Codes below the county, names, addresses, secrets and coordinates are ILLUSTRATIVE.", *n, *seed)); err != nil {
			return err
		}
		if *out == "-" {
			if _, err := stdout.Write(buf.Bytes()); err != nil {
				return err
			}
		} else if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
			return err
		}
	}
	if *csvOut != "" {
		var buf bytes.Buffer
		if err := sim.WriteRegistryCSV(&buf, e); err != nil {
			return err
		}
		if err := writeFileAtomic(*csvOut, buf.Bytes()); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "registry: %d devices, %d stations, %d gateways, %d places\n", len(e.Devices), len(e.Stations), len(e.Gateways), len(e.Places))
	return nil
}
