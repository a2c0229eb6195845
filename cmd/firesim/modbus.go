package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// cmdModbus runs simulated Modbus RTU slaves on a pseudo-terminal for
// firegate to poll, with injectable faults.
func cmdModbus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("modbus", "Simulate Modbus RTU slaves (firegate's shipped register maps) on a pseudo-terminal.\n"+
		"Point a firegate bus at the printed path (or at -link).", `  firesim modbus -link /tmp/ttyFW0
  firesim modbus -baud 9600 -device 1=ARCM300 -device 2=PT-100 -device 3=CC-10 -fault 2=noanswer
  firesim modbus -device 1=CC-10 -fault 1=exception:6 -fault 1=slow:800ms
`, stderr)
	baud := fs.Int("baud", 9600, "line speed the simulator emulates (0: instant)")
	link := fs.String("link", "", "also make this symlink to the terminal, for a stable path in a config")
	walk := fs.Duration("walk", 2*time.Second, "vary the values this often (0: static)")
	var devs, faults listFlag
	fs.Var(&devs, "device", "slave=MODEL, repeatable (default 1=ARCM300 2=PT-100 3=CC-10)")
	fs.Var(&faults, "fault", "slave=KIND[:ARG], repeatable: noanswer, badcrc, wronglength, truncated, wrongaddress, exception:CODE, slow:DURATION")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(devs) == 0 {
		devs = listFlag{"1=ARCM300", "2=PT-100", "3=CC-10"}
	}
	maps, err := gateway.ShippedMaps()
	if err != nil {
		return err
	}
	bus, err := rtu.NewBus(*baud)
	if err != nil {
		return err
	}
	defer bus.Close()
	var slaves []*rtu.Slave
	for _, d := range devs {
		addr, model, ok := strings.Cut(d, "=")
		a, err := strconv.Atoi(addr)
		if !ok || err != nil || a < 1 || a > 247 || maps[model] == nil {
			return fmt.Errorf("-device %q: want SLAVE=MODEL with a slave address 1…247 and a shipped model", d)
		}
		s := bus.AddSlave(byte(a), maps[model])
		s.SetPlausible()
		slaves = append(slaves, s)
		fmt.Fprintf(stdout, "slave %3d  %s (%s)\n", a, model, maps[model].Kind)
	}
	for _, f := range faults {
		addr, spec, _ := strings.Cut(f, "=")
		a, _ := strconv.Atoi(addr)
		s := bus.Slave(byte(a))
		if s == nil {
			return fmt.Errorf("-fault %q: no slave %s", f, addr)
		}
		kindName, arg, _ := strings.Cut(spec, ":")
		kind, err := rtu.ParseFault(kindName)
		if err != nil {
			return fmt.Errorf("-fault %q: %v", f, err)
		}
		fault := rtu.Fault{Kind: kind}
		switch kind {
		case rtu.FaultException:
			code, err := strconv.Atoi(arg)
			if err != nil || code < 1 || code > 255 {
				return fmt.Errorf("-fault %q: exception needs a code, e.g. exception:2", f)
			}
			fault.Code = byte(code)
		case rtu.FaultSlow:
			if fault.Delay, err = time.ParseDuration(arg); err != nil {
				return fmt.Errorf("-fault %q: slow needs a duration, e.g. slow:800ms", f)
			}
		}
		s.SetFault(fault)
	}
	if *link != "" {
		os.Remove(*link)
		if err := os.Symlink(bus.Path, *link); err != nil {
			return err
		}
		defer os.Remove(*link)
	}
	fmt.Fprintf(stdout, "serving Modbus RTU on %s at %d baud; Ctrl-C stops\n", bus.Path, *baud)
	if *walk > 0 {
		go func() {
			t := time.NewTicker(*walk)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				for _, s := range slaves {
					for i := range s.Map.Points {
						p := &s.Map.Points[i]
						if p.Event() {
							continue
						}
						v := rtu.Plausible(p.Metric.String(), p.Ch) * (1 + (rand.Float64()-0.5)*0.04)
						s.Set(p.Metric.String(), p.Ch, v)
					}
				}
			}
		}()
	}
	return bus.Serve(ctx)
}
