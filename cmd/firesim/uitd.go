package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/firmware-sim/uitd"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// demoBuilding is the networked building (联网单位) of the demo: a residential compound whose fire control
// room has a UITD (用户信息传输装置) at address 01 02 03 04 05 06, with one listed smoke detector.
// Appended to a firesim ledger, whose last section is its device list.
const demoBuilding = `  - id: uitd-450204-lsjy
    kind: facility
    model: "UITD GB/T 26875.3"
    grid: "450204001001"
    address: "柳州市柳南区柳南街道南站社区柳石家园 消防控制室"
    lat: 24.3165
    lon: 109.3951
    unit: "柳石家园物业服务中心"
  - id: fa-450204-lsjy-0105
    kind: facility
    model: "点型光电感烟火灾探测器"
    grid: "450204001001"
    address: "柳州市柳南区柳南街道南站社区柳石家园 3号楼2层走廊"
    lat: 24.3166
    lon: 109.3952
    unit: "柳石家园物业服务中心"
# GB/T 26875.3 UITDs (docs/gb26875.md): the compound's fire alarm controller reports through this one.
uitds:
  - address: "010203040506"
    device: uitd-450204-lsjy
    patrol: 2h
    networks: ["127.0.0.0/8"]
    points:
      - {system: 1, system_addr: 1, type: 42, addr: 0x105, device: fa-450204-lsjy-0105}
`

// demoSmoke is the listed smoke detector of demoBuilding.
var demoSmoke = uitd.Point{Component: gb26875.Component{System: gb26875.System{Type: 1, Addr: 1}, Type: 42, Addr: 0x105},
	Desc: "3号楼2层走廊"}

func cmdUITD(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("uitd",
		"A networked building's 用户信息传输装置 (UITD) reporting its fire alarm controller to firewatch over\n"+
			"GB/T 26875.3: keep-alives, then a fire alarm of a smoke detector after -fire. With -ledger and -o it\n"+
			"instead writes the ledger with the building (its UITD and smoke detector) appended.",
		"  firesim uitd -ledger var/ledger.yaml -o var/ledger-firewatch.yaml\n"+
			"  firesim uitd -centre 127.0.0.1:9026 -fire 20s\n",
		stderr)
	centre := fs.String("centre", "127.0.0.1:9026", "firewatch's gb26875.listen address")
	network := fs.String("network", "tcp", "tcp or udp")
	fire := fs.Duration("fire", 20*time.Second, "send the fire alarm this long after connecting; 0: never")
	keepalive := fs.Duration("keepalive", time.Minute, "interval of the keep-alives (巡检)")
	duty := fs.Duration("duty-delay", 30*time.Second, "the operator answers a 查岗 (type 91) this long after it came; negative: never")
	in := fs.String("ledger", "", "ledger to append the building to (with -o)")
	out := fs.String("o", "", "write the ledger with the building here and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out != "" {
		return writeBuildingLedger(*in, *out, stderr)
	}
	u, err := uitd.Dial(ctx, *network, *centre, uitd.Config{Addr: gb26875.Address{1, 2, 3, 4, 5, 6}, DutyDelay: *duty})
	if err != nil {
		return err
	}
	defer u.Close()
	fmt.Fprintf(stderr, "UITD 010203040506 connected to %s (%s)\n", *centre, *network)
	tick := time.NewTicker(*keepalive)
	defer tick.Stop()
	var fireC <-chan time.Time
	if *fire > 0 {
		fireC = time.After(*fire)
	}
	if _, err := u.KeepAlive(); err != nil {
		return fmt.Errorf("keep-alive: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-u.Done():
			return fmt.Errorf("connection to %s closed", *centre)
		case <-tick.C:
			if _, err := u.KeepAlive(); err != nil {
				return fmt.Errorf("keep-alive: %w", err)
			}
		case <-fireC:
			serial, err := u.Fire(demoSmoke)
			if err != nil {
				return fmt.Errorf("fire alarm: %w", err)
			}
			fmt.Fprintf(stderr, "UITD 010203040506: fire alarm of the smoke detector 0x00000105 (3号楼2层走廊) confirmed, serial %d\n", serial)
		}
	}
}

func writeBuildingLedger(in, out string, stderr io.Writer) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("-ledger: %w", err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, '\n')
	}
	b = append(b, demoBuilding...)
	l, err := devices.ParseLedger(out, b)
	if err != nil {
		return fmt.Errorf("the ledger with the building does not load (is its device list its last section?): %w", err)
	}
	if err := writeFileAtomic(out, b); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s: %d devices, %d UITD\n", out, len(l.Devices), len(l.UITDs()))
	return nil
}
