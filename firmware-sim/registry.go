package sim

import (
	"bufio"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/firewatch-iot/firewatch/devices"
)

// RegistryOptions says what GenerateRegistry makes.
type RegistryOptions struct {
	// Devices is the number of devices (at least 1).
	Devices int
	// Endpoint is the dispatch receiver's base URL, as in LedgerOptions.
	Endpoint string
	// Seed makes the registry reproducible.
	Seed int64
}

// Shape of a generated registry, after a county's 台账: about 120 devices
// per village or community, 15 villages per town (街道/乡镇) and one micro
// fire station per town, 12 towns per county; electrical-fire monitors and
// charging cabinets report through gateways of 16 devices; three smoke
// detectors in five are NB-IoT (CTWing, by IMEI), the others and the
// hydrant sensors connect to the broker with their own secret.
const (
	regPerVillage  = 120
	regPerTown     = 15
	regPerCounty   = 12
	regPerGateway  = 16
	regNBIoTPerTen = 6
)

var regModels = [devices.NumKinds][]string{
	devices.KindElectrical: {"EFM-4T", "ARCM300-Z", "DH-EF200", "LD-EFM30"},
	devices.KindSmoke:      {"NB-SD100", "JTY-GD-NB", "SD-WIFI8", "GS-528"},
	devices.KindHydrant:    {"HP-NB10", "PT-100", "XHS-Y2"},
	devices.KindCharger:    {"EBC-10", "EBC-12", "CDG-8"},
}

var regStreets = []string{"人民路", "解放路", "建设路", "和平街", "胜利路", "新华街", "朝阳路", "文化路", "工业路", "滨江路", "中山路", "民主街"}

// GenerateRegistry returns a registry of opts.Devices devices for scale
// tests (`firesim registry`, the registry benchmarks): every kind of the
// four sensor kinds in a realistic mix (kindPattern), grids under
// province-level codes of the national table with illustrative county,
// town and village numbers and names, a station per town, gateways, NB-IoT
// bindings and secret hashes of the right form (random bytes: no secret
// opens them). Entries come in the order a county's ledger lists them.
func GenerateRegistry(opts RegistryOptions) (*devices.Entries, error) {
	n := opts.Devices
	if n <= 0 {
		return nil, fmt.Errorf("generate registry: device count %d: want at least 1", n)
	}
	base := strings.TrimRight(opts.Endpoint, "/")
	if base == "" {
		base = DefaultEndpoint
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("generate registry: endpoint %q is not an http(s) URL", base)
	}
	r := rand.New(rand.NewPCG(uint64(opts.Seed), 0x7265676973747279)) // "registry"
	villages := max(1, (n+regPerVillage-1)/regPerVillage)
	e := &devices.Entries{Places: map[string]string{}, Devices: make([]devices.DeviceEntry, 0, n)}
	provinces := []string{"45", "44", "33", "50", "31", "51", "43", "36"}
	var (
		county, town string
		countyName   string
		townName     string
		tlat, tlon   float64
		gw           string
		gwLeft       int
		smoke        int
	)
	dev := 0
	for v := range villages {
		if v%regPerTown == 0 {
			t := v / regPerTown
			if t%regPerCounty == 0 {
				c := t / regPerCounty
				// County c: province, city 01…20, county 01…20 (6 digits).
				p := provinces[(c/400)%len(provinces)]
				county = fmt.Sprintf("%s%02d%02d", p, 1+(c/20)%20, 1+c%20)
				countyName = fmt.Sprintf("示例%d县", c+1)
				e.Places[county] = countyName
			}
			town = fmt.Sprintf("%s%03d", county, 1+t%regPerCounty)
			townName = fmt.Sprintf("第%d街道", 1+t%regPerCounty)
			e.Places[town] = townName
			tlat, tlon = 22+r.Float64()*8, 104+r.Float64()*12
			id := "mfs-" + town
			e.Stations = append(e.Stations, devices.StationEntry{ID: id, Name: countyName + townName + "微型消防站",
				Grids: []string{town}, Endpoint: base + "/dispatch/" + id, Lat: round6(tlat), Lon: round6(tlon)})
		}
		grid := fmt.Sprintf("%s%03d", town, 1+v%regPerTown)
		vname := fmt.Sprintf("第%d社区", 1+v%regPerTown)
		if v%3 == 0 {
			vname = fmt.Sprintf("第%d村", 1+v%regPerTown)
		}
		e.Places[grid] = vname
		vlat, vlon := tlat+(r.Float64()*2-1)*0.02, tlon+(r.Float64()*2-1)*0.02
		prefix := countyName + townName + vname
		committee := vname + "委会"
		from, to := v*n/villages, (v+1)*n/villages
		for k := range to - from {
			dev++
			kind := kindPattern[k%len(kindPattern)]
			d := devices.DeviceEntry{
				ID:    fmt.Sprintf("%s-%s-%06d", kindPrefix[kind], grid[:6], dev),
				Kind:  kind.String(),
				Model: regModels[kind][r.IntN(len(regModels[kind]))],
				Grid:  grid,
				Lat:   round6(vlat + (r.Float64()*2-1)*0.002), Lon: round6(vlon + (r.Float64()*2-1)*0.002),
			}
			street := regStreets[r.IntN(len(regStreets))]
			no := 1 + r.IntN(299)
			switch kind {
			case devices.KindElectrical:
				pu := electricalPlaces[r.IntN(len(electricalPlaces))]
				d.Address = fmt.Sprintf("%s%s%d号%s", prefix, street, no, pu[0])
				d.Unit = fmt.Sprintf(pu[1], townName, vname, street)
			case devices.KindSmoke:
				d.Address = fmt.Sprintf("%s%s%d号%d栋%d单元%d室", prefix, street, no, 1+r.IntN(20), 1+r.IntN(3), 101+100*r.IntN(7)+r.IntN(4))
				d.Unit = committee
			case devices.KindHydrant:
				d.Address = fmt.Sprintf("%s%s%d号门前市政消火栓", prefix, street, no)
				d.Unit = countyName + "供水公司"
			case devices.KindCharger:
				d.Address = fmt.Sprintf("%s%s%d号%d栋旁电动自行车充电棚", prefix, street, no, 1+r.IntN(20))
				d.Unit = vname + street + "物业服务中心"
			}
			d.Phone = unitPhone(d.Unit)
			switch kind {
			case devices.KindElectrical, devices.KindCharger:
				if gwLeft == 0 {
					gw = fmt.Sprintf("gw-%s-%05d", grid[:6], len(e.Gateways)+1)
					e.Gateways = append(e.Gateways, devices.GatewayEntry{ID: gw, SecretHash: fakeHash(r)})
					gwLeft = regPerGateway
				}
				gwLeft--
				d.Gateway = gw
			case devices.KindSmoke:
				smoke++
				if smoke%10 < regNBIoTPerTen {
					d.NBIoT = devices.NBIoT{IMEI: fmt.Sprintf("86%013d", dev), Product: "NB-SMOKE-TM",
						Responsible: householders[smoke%len(householders)], Mobile: fmt.Sprintf("139%08d", dev%100000000)}
				} else {
					d.SecretHash = fakeHash(r)
				}
			default:
				d.SecretHash = fakeHash(r)
			}
			e.Devices = append(e.Devices, d)
		}
		gwLeft = 0 // a gateway serves one village
	}
	return e, nil
}

func round6(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 6, 64), 64)
	return v
}

// unitPhone is the duty phone of a unit: the same unit, the same number.
func unitPhone(unit string) string {
	h := uint32(2166136261)
	for i := 0; i < len(unit); i++ {
		h = (h ^ uint32(unit[i])) * 16777619
	}
	return fmt.Sprintf("0772%07d", h%10000000)
}

// fakeHash is an argon2id secret hash of the form firewatch hash-secret
// writes, over random bytes: well formed, opened by no secret.
func fakeHash(r *rand.Rand) string {
	var salt [16]byte
	var key [32]byte
	for i := range salt {
		salt[i] = byte(r.Uint32())
	}
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	b64 := base64.RawStdEncoding
	return "$argon2id$v=19$m=19456,t=2,p=1$" + b64.EncodeToString(salt[:]) + "$" + b64.EncodeToString(key[:])
}

// WriteRegistryYAML writes e as a YAML ledger (devices.ParseLedger reads
// it), quickly enough for a million devices: devices.MarshalEntries goes
// through yaml.v3's encoder. Rules and UITDs are not written (the
// generator makes none).
func WriteRegistryYAML(w io.Writer, e *devices.Entries, comment string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	q := strconv.Quote // Go's quoting is valid YAML double-quoted style
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	if comment != "" {
		for _, line := range strings.Split(strings.TrimRight(comment, "\n"), "\n") {
			bw.WriteString("# " + line + "\n")
		}
	}
	bw.WriteString("places:\n")
	for _, code := range slices.Sorted(maps.Keys(e.Places)) {
		fmt.Fprintf(bw, "  %s: %s\n", q(code), q(e.Places[code]))
	}
	bw.WriteString("stations:\n")
	for _, s := range e.Stations {
		grids := make([]string, len(s.Grids))
		for i, g := range s.Grids {
			grids[i] = q(g)
		}
		fmt.Fprintf(bw, "  - {id: %s, name: %s, grids: [%s], endpoint: %s, lat: %s, lon: %s}\n",
			q(s.ID), q(s.Name), strings.Join(grids, ", "), q(s.Endpoint), f(s.Lat), f(s.Lon))
	}
	bw.WriteString("gateways:\n")
	for _, g := range e.Gateways {
		fmt.Fprintf(bw, "  - {id: %s, secret_hash: %s}\n", q(g.ID), q(g.SecretHash))
	}
	bw.WriteString("devices:\n")
	for i := range e.Devices {
		d := &e.Devices[i]
		bw.WriteString("  - id: " + q(d.ID) + "\n    kind: " + d.Kind + "\n")
		for _, kv := range [...][2]string{{"model", d.Model}, {"grid", d.Grid}, {"address", d.Address}, {"unit", d.Unit},
			{"phone", d.Phone}, {"station", d.Station}, {"gateway", d.Gateway}, {"secret_hash", d.SecretHash}} {
			if kv[1] != "" {
				bw.WriteString("    " + kv[0] + ": " + q(kv[1]) + "\n")
			}
		}
		bw.WriteString("    lat: " + f(d.Lat) + "\n    lon: " + f(d.Lon) + "\n")
		if d.Channels != 0 {
			bw.WriteString("    channels: " + strconv.Itoa(d.Channels) + "\n")
		}
		if d.Heartbeat != 0 {
			bw.WriteString("    heartbeat: " + d.Heartbeat.String() + "\n")
		}
		if nb := d.NBIoT; nb != (devices.NBIoT{}) {
			bw.WriteString("    nbiot: {")
			sep := ""
			for _, kv := range [...][2]string{{"imei", nb.IMEI}, {"platform_id", nb.PlatformID}, {"serial", nb.Serial},
				{"product", nb.Product}, {"responsible", nb.Responsible}, {"mobile", nb.Mobile}} {
				if kv[1] != "" {
					bw.WriteString(sep + kv[0] + ": " + q(kv[1]))
					sep = ", "
				}
			}
			bw.WriteString("}\n")
		}
	}
	return bw.Flush()
}

// RegistryCSVHeader is the devices sheet's columns that WriteRegistryCSV
// writes, with the Chinese headers of the registry's spreadsheet template
// (registry/sheet).
var RegistryCSVHeader = []string{"设备编号", "设备类型", "型号", "行政区划代码", "地址", "经度", "纬度", "责任单位", "责任人",
	"联系电话", "微型消防站", "网关", "密钥哈希", "IMEI", "产品编解码", "通知手机"}

// WriteRegistryCSV writes e's devices as a CSV of the spreadsheet
// template's devices sheet (RegistryCSVHeader; UTF-8). Stations, gateways
// and places are not in it: import them first (the YAML ledger or their
// sheets), as a county does.
func WriteRegistryCSV(w io.Writer, e *devices.Entries) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := csv.NewWriter(bw)
	if err := cw.Write(RegistryCSVHeader); err != nil {
		return err
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	for i := range e.Devices {
		d := &e.Devices[i]
		if err := cw.Write([]string{d.ID, d.Kind, d.Model, d.Grid, d.Address, f(d.Lon), f(d.Lat), d.Unit,
			d.NBIoT.Responsible, d.Phone, d.Station, d.Gateway, d.SecretHash, d.NBIoT.IMEI, d.NBIoT.Product, d.NBIoT.Mobile}); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}
