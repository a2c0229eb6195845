package sim

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/firewatch-iot/firewatch/devices"
)

// Defaults of LedgerOptions.
const (
	DefaultLedgerDevices = 300
	DefaultEndpoint      = "http://127.0.0.1:8090"
)

// LedgerOptions says what GenerateLedger writes.
type LedgerOptions struct {
	// Devices is the number of devices; 0 means DefaultLedgerDevices.
	Devices int
	// Endpoint is the base URL of the dispatch receiver; each station's
	// endpoint is Endpoint + "/dispatch/" + station id. "" means
	// DefaultEndpoint (firesim receiver's default address).
	Endpoint string
	// Seed makes the addresses, units and coordinates reproducible.
	Seed int64
	// Gateways, if above zero, assigns the devices of each village to one
	// of that many gateway boxes (gw-001 …), for gateway batches.
	Gateways int
	// NBIoT binds this many smoke detectors of villages (村) to NB-IoT
	// platforms, alternately CTWing (by IMEI) and OneNET (by device id):
	// firesim nbiot reports for them, firesim run leaves them out
	// (NBIoTIMEI, NBIoTDeviceID).
	NBIoT int
	// SecretHash, if set, gives each device's secret_hash (its MQTT
	// password hash) by id: firesim ledger -secrets.
	SecretHash func(id string) string
}

// kindPattern is the mix of kinds within a village, all four first so that
// every village with four devices or more has each kind: of ten devices 3
// electrical-fire monitors, 4 smoke detectors, 2 charging cabinets and 1
// hydrant.
var kindPattern = [...]devices.Kind{
	devices.KindElectrical, devices.KindSmoke, devices.KindCharger, devices.KindHydrant, devices.KindSmoke,
	devices.KindElectrical, devices.KindSmoke, devices.KindCharger, devices.KindSmoke, devices.KindElectrical,
}

var kindPrefix = [devices.NumKinds]string{"", "el", "sm", "hy", "ch"}

// Models are illustrative product codes.
var kindModel = [devices.NumKinds]string{"", "EFM-4T", "NB-SD100", "HP-NB10", "EBC-10"}

// electricalPlaces pairs a place an electrical-fire monitor protects with
// the format of its owning unit (责任单位): %[1]s town, %[2]s village, %[3]s street.
var electricalPlaces = [][2]string{
	{"农贸市场配电房", "%[2]s农贸市场管理处"},
	{"中心小学教学楼配电箱", "%[1]s中心小学"},
	{"敬老院总配电箱", "%[1]s敬老院"},
	{"商住楼地下配电房", "%[3]s商住楼物业服务中心"},
	{"出租屋总配电箱", "%[2]s出租屋管理服务站"},
	{"沿街商铺总配电箱", "%[3]s商户联合会"},
	{"小微企业厂房配电柜", "%[1]s%[3]s五金制品厂"},
	{"卫生服务站配电箱", "%[2]s卫生服务站"},
}

// GenerateLedger writes a demo ledger (台账) in the format of
// devices.ParseLedger: places, one micro fire station (微型消防站) per town
// covering the town's 9-digit prefix, and opts.Devices devices of all four
// kinds spread over the villages of four counties (柳南区 450204, 平阳县
// 330326, 丰都县 500230, 普陀区 310107). Ids look like el-450204-0001.
// Town and village codes, names, addresses and units are illustrative.
func GenerateLedger(w io.Writer, opts LedgerOptions) error {
	n := opts.Devices
	switch {
	case n == 0:
		n = DefaultLedgerDevices
	case n < 0:
		return fmt.Errorf("generate ledger: device count %d is negative", n)
	}
	base := opts.Endpoint
	if base == "" {
		base = DefaultEndpoint
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return fmt.Errorf("generate ledger: endpoint %q is not an http(s) URL", base)
	}
	base = strings.TrimRight(base, "/")
	r := rand.New(rand.NewPCG(uint64(opts.Seed), 0x6669726577617463)) // "firewatc"
	jitter := func(d float64) float64 { return (r.Float64()*2 - 1) * d }

	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	q := strconv.Quote // Go's quoting is valid YAML double-quoted style

	p("# firewatch demo ledger (台账), written by firesim ledger: %d devices, seed %d.\n", n, opts.Seed)
	p("# County codes and names are real (统计用区划代码). Town and village codes and names, streets,\n")
	p("# addresses, owning units (责任单位) and coordinates are ILLUSTRATIVE: not for real dispatch.\n\n")

	p("places:\n")
	seenProv := map[string]bool{}
	for _, c := range demoCounties {
		if !seenProv[c.province] {
			seenProv[c.province] = true
			p("  %s: %s\n", q(c.province), q(c.prov))
		}
		p("  %s: %s\n", q(c.code), q(c.name))
		for _, t := range c.towns {
			p("  %s: %s\n", q(t.code), q(t.name))
			for _, v := range t.villages {
				p("  %s: %s\n", q(v.code), q(v.name))
			}
		}
	}

	p("\nstations:\n")
	for _, c := range demoCounties {
		for _, t := range c.towns {
			id := "mfs-" + t.code
			p("  - id: %s\n", id)
			p("    name: %s\n", q(t.name+"微型消防站"))
			p("    grids: [%s]\n", q(t.code))
			p("    endpoint: %s\n", q(base+"/dispatch/"+id))
			p("    lat: %.6f\n    lon: %.6f\n", t.lat+jitter(0.002), t.lon+jitter(0.002))
		}
	}

	type place struct {
		c *county
		t *town
		v village
	}
	// Villages in county-robin and town-robin order, so that a small
	// ledger still spans the four counties and their towns; about eight
	// devices per village, so that each village used has every kind.
	perCounty := make([][]place, len(demoCounties))
	for i := range demoCounties {
		c := &demoCounties[i]
		for vi := 0; vi < 100; vi++ {
			for j := range c.towns {
				if vi < len(c.towns[j].villages) {
					perCounty[i] = append(perCounty[i], place{c, &c.towns[j], c.towns[j].villages[vi]})
				}
			}
		}
	}
	var villages []place
	for k := 0; len(villages) < 1000; k++ {
		added := false
		for _, vs := range perCounty {
			if k < len(vs) {
				villages = append(villages, vs[k])
				added = true
			}
		}
		if !added {
			break
		}
	}
	villages = villages[:max(1, min(len(villages), n/8))]

	p("\ndevices:\n")
	counter := map[string]int{}
	nb := 0
	for vi, pl := range villages {
		c, t, v := pl.c, pl.t, pl.v
		vlat, vlon := t.lat+jitter(0.012), t.lon+jitter(0.012)
		from, to := vi*n/len(villages), (vi+1)*n/len(villages)
		for k := 0; k < to-from; k++ {
			kind := kindPattern[k%len(kindPattern)]
			counter[c.code]++
			id := fmt.Sprintf("%s-%s-%04d", kindPrefix[kind], c.code, counter[c.code])
			street := t.streets[r.IntN(len(t.streets))]
			no := 1 + r.IntN(299)
			prefix := c.name + t.name + v.name
			var addr, unit string
			switch kind {
			case devices.KindElectrical:
				pu := electricalPlaces[r.IntN(len(electricalPlaces))]
				addr = fmt.Sprintf("%s%s%d号%s", prefix, street, no, pu[0])
				unit = fmt.Sprintf(pu[1], t.name, v.name, street)
			case devices.KindSmoke:
				if strings.HasSuffix(v.name, "村") {
					addr = fmt.Sprintf("%s%d组%d号村民自建房厨房", prefix, 1+r.IntN(12), no)
				} else if c.province == "31" { // Shanghai numbers its lanes (弄)
					addr = fmt.Sprintf("%s%s%d弄%d号%d室", prefix, street, no, 1+r.IntN(40), 101+100*r.IntN(6)+r.IntN(4))
				} else {
					addr = fmt.Sprintf("%s%s%d号%d栋%d单元%d室", prefix, street, no, 1+r.IntN(20), 1+r.IntN(3), 101+100*r.IntN(7)+r.IntN(4))
				}
				if r.IntN(4) == 0 {
					addr += "（独居老人户）"
				}
				unit = committee(v.name)
			case devices.KindHydrant:
				other := t.streets[(indexOf(t.streets, street)+1)%len(t.streets)]
				if other != street && r.IntN(2) == 0 {
					addr = fmt.Sprintf("%s%s与%s交叉口东北角室外消火栓", prefix, street, other)
				} else {
					addr = fmt.Sprintf("%s%s%d号门前市政消火栓", prefix, street, no)
				}
				unit = c.water
			case devices.KindCharger:
				estate := strings.TrimSuffix(strings.TrimSuffix(street, "路"), "街") + []string{"新苑", "小区", "花园", "家园"}[r.IntN(4)]
				addr = fmt.Sprintf("%s%s%d号%s%d栋旁电动自行车集中充电棚%d号柜", prefix, street, no, estate, 1+r.IntN(20), 1+r.IntN(3))
				unit = estate + "物业服务中心"
			}
			p("  - id: %s\n", id)
			p("    kind: %s\n", kind)
			p("    model: %s\n", q(kindModel[kind]))
			p("    grid: %s\n", q(v.code))
			p("    address: %s\n", q(addr))
			p("    lat: %.6f\n    lon: %.6f\n", vlat+jitter(0.002), vlon+jitter(0.002))
			p("    unit: %s\n", q(unit))
			if opts.SecretHash != nil {
				p("    secret_hash: %s\n", q(opts.SecretHash(id)))
			}
			if opts.Gateways > 0 {
				p("    gateway: gw-%03d\n", 1+vi%opts.Gateways)
			}
			if kind == devices.KindSmoke && nb < opts.NBIoT && strings.HasSuffix(v.name, "村") {
				nb++
				// The household's contact (责任人), for SMS and voice calls
				// (illustrative names, numbers of a reserved-looking range).
				contact := fmt.Sprintf("responsible: %s, mobile: %s", q(householders[(nb-1)%len(householders)]), q(fmt.Sprintf("1380000%04d", nb)))
				if nb%2 == 1 {
					p("    nbiot: {imei: %s, product: NB-SMOKE-TM, %s}\n", q(NBIoTIMEI(nb)), contact)
				} else {
					p("    nbiot: {platform_id: %s, product: NB-SMOKE-TM, %s}\n", q(NBIoTDeviceID(nb)), contact)
				}
				p("    heartbeat: 12h\n") // GB/T 45839: lost shown within 24 h, with a margin
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("generate ledger: %w", err)
	}
	return nil
}

// committee is the residents' or villagers' committee that owns the smoke
// detectors handed out to households.
func committee(village string) string {
	switch {
	case strings.HasSuffix(village, "居委会"):
		return village
	case strings.HasSuffix(village, "村"):
		return village + "村民委员会"
	}
	return village + "居民委员会"
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

// NBIoTIMEI is the IMEI of the n-th NB-IoT detector of a generated ledger
// (odd n: CTWing).
func NBIoTIMEI(n int) string { return fmt.Sprintf("8699750%08d", n) }

// NBIoTDeviceID is the OneNET device id of the n-th NB-IoT detector of a
// generated ledger (even n).
func NBIoTDeviceID(n int) string { return strconv.Itoa(523400000 + n) }

// householders are illustrative names of the households an NB-IoT smoke
// detector of the demo protects.
var householders = []string{"韦建国", "覃秀兰", "黄志强", "蓝美玲", "莫永福", "梁丽华"}
