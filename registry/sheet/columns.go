package sheet

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Sheet names of the workbook, as the template has them.
const (
	SheetDevices  = "设备"
	SheetGateways = "网关"
	SheetStations = "微型消防站"
	SheetPlaces   = "行政区划"
	SheetHelp     = "说明"
)

// Keys of the columns that are not fields of an entry.
const (
	keyOp     = "op"     // 操作: blank or 新增/修改 (upsert), 删除 (delete)
	keyGen    = "secret" // 生成密钥: 是 makes a new secret for the row
	keyRemark = "remark" // 备注: free text, ignored
)

// column is one column of a sheet of entries T. key is the ledger's YAML key
// (the devices.Problem Field that ledger validation reports), header the
// Chinese header the template has; aliases are other headers accepted on
// import (the YAML key always is). get and set are inverse: set(get(e))
// gives e's field back, which is what makes export → import the identity.
type column[T any] struct {
	key, header string
	aliases     []string
	help        string // for the 说明 sheet
	number      bool   // written as a number cell in XLSX
	text        bool   // digits that must stay text (codes, phones): the template formats the column as text
	raw         bool   // read as is, not trimmed (YAML text)
	get         func(e *T) string
	set         func(e *T, v string) error
}

// spec describes one sheet: its name, the section of devices.Problem it
// maps to, its columns, and how to find an entry's id.
type spec[T any] struct {
	sheet   string
	section string
	cols    []column[T]
	id      func(e *T) string
}

func str[T any](key, header, help string, f func(e *T) *string, aliases ...string) column[T] {
	return column[T]{key: key, header: header, help: help, aliases: aliases,
		get: func(e *T) string { return *f(e) },
		set: func(e *T, v string) error { *f(e) = v; return nil }}
}

func raw[T any](c column[T]) column[T] {
	c.raw = true
	return c
}

func code[T any](key, header, help string, f func(e *T) *string, aliases ...string) column[T] {
	c := str(key, header, help, f, aliases...)
	c.text = true
	return c
}

func coord[T any](key, header, help string, limit float64, f func(e *T) *float64) column[T] {
	return column[T]{key: key, header: header, help: help, number: true,
		get: func(e *T) string { return formatFloat(*f(e)) },
		set: func(e *T, v string) error {
			x, err := parseFloat(v)
			if err != nil {
				return err
			}
			if x < -limit || x > limit {
				return fmt.Errorf("%s %s is outside -%g…%g", key, v, limit, limit)
			}
			*f(e) = x
			return nil
		}}
}

// Extra columns every entry sheet may have (op and remark), and secret
// for sheets of entries that connect themselves.
func extra[T any](withSecret bool) []column[T] {
	cs := []column[T]{}
	if withSecret {
		cs = append(cs, column[T]{key: keyGen, header: "生成密钥", aliases: []string{"generate_secret"},
			help: "填“是”则导入时生成新的 MQTT 密钥（轮换），结果中只返回一次；新设备无网关、无 NB-IoT 绑定且未填密钥哈希时自动生成"})
	}
	return append(cs,
		column[T]{key: keyOp, header: "操作", aliases: []string{"action"}, help: "留空、新增或修改：按编号新增或整行覆盖；删除：删除该编号"},
		column[T]{key: keyRemark, header: "备注", aliases: []string{"note"}, help: "自由填写，导入时忽略"})
}

var deviceSpec = spec[devices.DeviceEntry]{
	sheet: SheetDevices, section: "devices",
	id: func(e *devices.DeviceEntry) string { return e.ID },
	cols: append([]column[devices.DeviceEntry]{
		code("id", "设备编号", "必填；字母、数字、-、_、.，最长 64 字节", func(e *devices.DeviceEntry) *string { return &e.ID }),
		{key: "kind", header: "设备类型", help: "必填；类型代码或中文名（下拉选择）",
			get: func(e *devices.DeviceEntry) string { return kindText(e.Kind) },
			set: func(e *devices.DeviceEntry, v string) error {
				k, ok := parseKind(v)
				if !ok {
					return fmt.Errorf("unknown device kind %q (want %s)", v, kindChoices())
				}
				e.Kind = k
				return nil
			}},
		str("model", "型号", "", func(e *devices.DeviceEntry) *string { return &e.Model }),
		code("grid", "行政区划代码", "必填；12 位（县 6 位 + 乡镇 3 位 + 村/社区 3 位）", func(e *devices.DeviceEntry) *string { return &e.Grid }),
		str("address", "地址", "", func(e *devices.DeviceEntry) *string { return &e.Address }),
		coord("lon", "经度", "WGS-84 十进制度", 180, func(e *devices.DeviceEntry) *float64 { return &e.Lon }),
		coord("lat", "纬度", "WGS-84 十进制度", 90, func(e *devices.DeviceEntry) *float64 { return &e.Lat }),
		str("unit", "责任单位", "", func(e *devices.DeviceEntry) *string { return &e.Unit }),
		str("contact", "责任人", "责任人姓名，与责任单位、联系电话一同推送给出警人员；NB-IoT 设备在表中无“NB-IoT责任人”列时，也作其绑定的责任人", func(e *devices.DeviceEntry) *string { return &e.Contact }),
		code("phone", "联系电话", "责任人电话，推送给出警人员", func(e *devices.DeviceEntry) *string { return &e.Phone }),
		str("station", "微型消防站", "站点编号；留空则按行政区划代码取覆盖该区划的站", func(e *devices.DeviceEntry) *string { return &e.Station }),
		str("gateway", "网关", "转发该设备数据的网关编号；留空表示设备直连", func(e *devices.DeviceEntry) *string { return &e.Gateway }),
		{key: "channels", header: "通道数", help: "0 或留空：按设备类型的最大值", number: true,
			get: func(e *devices.DeviceEntry) string { return formatInt(e.Channels) },
			set: func(e *devices.DeviceEntry, v string) error {
				n, err := parseInt(v)
				if err != nil {
					return err
				}
				if n < 0 || n > devices.MaxChannels {
					return fmt.Errorf("channels %d is outside 0…%d", n, devices.MaxChannels)
				}
				e.Channels = n
				return nil
			}},
		{key: "heartbeat", header: "心跳周期", help: "如 30m、6h、1h30m，或秒数；留空：按设备类型",
			get: func(e *devices.DeviceEntry) string { return formatDuration(e.Heartbeat) },
			set: func(e *devices.DeviceEntry, v string) error {
				d, err := parseDuration(v)
				if err != nil {
					return err
				}
				e.Heartbeat = d
				return nil
			}},
		raw(str("rules", "规则覆盖", "该设备的规则覆盖，YAML 映射，如 {residual_current: {above: 500}}", func(e *devices.DeviceEntry) *string { return &e.Rules })),
		str("secret_hash", "密钥哈希", "MQTT 密钥的 argon2id 哈希（firewatch hash-secret）；留空则保留原有哈希", func(e *devices.DeviceEntry) *string { return &e.SecretHash }),
		code("nbiot.imei", "IMEI", "NB-IoT 模组 IMEI（15 位）", func(e *devices.DeviceEntry) *string { return &e.NBIoT.IMEI }),
		str("nbiot.platform_id", "平台设备ID", "NB-IoT 平台设备 ID（CTWing deviceId、OneNET dev_id）", func(e *devices.DeviceEntry) *string { return &e.NBIoT.PlatformID }),
		code("nbiot.serial", "身份标识码", "GB/T 45839 设备身份标识码", func(e *devices.DeviceEntry) *string { return &e.NBIoT.Serial }),
		str("nbiot.product", "产品编解码", "NB-IoT 产品编解码名（ingest/nbiot/maps）", func(e *devices.DeviceEntry) *string { return &e.NBIoT.Product }),
		str("nbiot.responsible", "NB-IoT责任人", "GB/T 45839 5.10.4 通知的责任人姓名；仅用于 NB-IoT 设备；无此列时取“责任人”", func(e *devices.DeviceEntry) *string { return &e.NBIoT.Responsible }, "responsible"),
		code("nbiot.mobile", "通知手机", "GB/T 45839 5.10.4 通知的手机号；仅用于 NB-IoT 设备", func(e *devices.DeviceEntry) *string { return &e.NBIoT.Mobile }),
	}, extra[devices.DeviceEntry](true)...),
}

var gatewaySpec = spec[devices.GatewayEntry]{
	sheet: SheetGateways, section: "gateways",
	id: func(e *devices.GatewayEntry) string { return e.ID },
	cols: append([]column[devices.GatewayEntry]{
		code("id", "网关编号", "必填", func(e *devices.GatewayEntry) *string { return &e.ID }),
		str("secret_hash", "密钥哈希", "MQTT 密钥的 argon2id 哈希；留空则保留原有哈希，新网关自动生成密钥", func(e *devices.GatewayEntry) *string { return &e.SecretHash }),
	}, extra[devices.GatewayEntry](true)...),
}

var stationSpec = spec[devices.StationEntry]{
	sheet: SheetStations, section: "stations",
	id: func(e *devices.StationEntry) string { return e.ID },
	cols: append([]column[devices.StationEntry]{
		code("id", "站点编号", "必填", func(e *devices.StationEntry) *string { return &e.ID }),
		str("name", "站点名称", "必填", func(e *devices.StationEntry) *string { return &e.Name }),
		{key: "grids", header: "覆盖区划", help: "覆盖的行政区划代码前缀（6、9 或 12 位），多个用逗号或顿号分隔", text: true,
			get: func(e *devices.StationEntry) string { return strings.Join(e.Grids, ",") },
			set: func(e *devices.StationEntry, v string) error { e.Grids = splitList(v); return nil }},
		str("endpoint", "推送地址", "联勤联调推送地址 http(s)://…", func(e *devices.StationEntry) *string { return &e.Endpoint }),
		coord("lon", "经度", "", 180, func(e *devices.StationEntry) *float64 { return &e.Lon }),
		coord("lat", "纬度", "", 90, func(e *devices.StationEntry) *float64 { return &e.Lat }),
	}, extra[devices.StationEntry](false)...),
}

// place is a row of the 行政区划 sheet.
type place struct{ Code, Name string }

var placeSpec = spec[place]{
	sheet: SheetPlaces, section: "places",
	id: func(e *place) string { return e.Code },
	cols: append([]column[place]{
		code("code", "行政区划代码", "必填；2、4、6、9 或 12 位", func(e *place) *string { return &e.Code }),
		str("name", "名称", "必填；如 柳州市柳南区", func(e *place) *string { return &e.Name }),
	}, extra[place](false)...),
}

// kindText is the text a kind code is exported as: its Chinese name.
func kindText(k string) string {
	if kd, err := devices.ParseKind(k); err == nil {
		return kd.ZH()
	}
	return k
}

// parseKind accepts a kind's code or its Chinese name; an empty cell is
// left to the registry's validation (a kind is required).
func parseKind(v string) (string, bool) {
	if v == "" {
		return "", true
	}
	for k := devices.KindElectrical; k < devices.NumKinds; k++ {
		if v == k.String() || v == k.ZH() || strings.EqualFold(v, k.String()) {
			return k.String(), true
		}
	}
	return "", false
}

// kindChoices lists every kind's code and Chinese name, for messages and
// the template's drop-down.
func kindChoices() string { return strings.Join(kindList(), ", ") }

func kindList() []string {
	var zh, en []string
	for k := devices.KindElectrical; k < devices.NumKinds; k++ {
		zh, en = append(zh, k.ZH()), append(en, k.String())
	}
	return append(zh, en...)
}

func splitList(v string) []string {
	f := strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == '，' || r == '、' || r == ';' || r == '；' || r == ' ' || r == '\n' || r == '\t'
	})
	if len(f) == 0 {
		return nil
	}
	return f
}

func formatFloat(x float64) string {
	if x == 0 {
		return ""
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

func parseFloat(v string) (float64, error) {
	if v == "" {
		return 0, nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("%q is not a number", v)
	}
	return x, nil
}

func formatInt(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func parseInt(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		// Excel may hold a whole number as 4.0 or 4E+0.
		x, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || x != math.Trunc(x) || math.Abs(x) > 1e9 {
			return 0, fmt.Errorf("%q is not a whole number", v)
		}
		n = int(x)
	}
	return n, nil
}

// formatDuration writes d as Go does but without the zero tails ("30m", not "30m0s").
func formatDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// parseDuration accepts a Go duration ("30m", "1h30m") or a number of seconds.
func parseDuration(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.Atoi(v)
		if err != nil || n > 1e9 {
			return 0, fmt.Errorf("heartbeat %q is too long", v)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("heartbeat %q is not a duration such as 30m or 6h, nor a number of seconds", v)
	}
	return d, nil
}

// sciNumber reports whether v is a number in scientific notation as a
// spreadsheet writes a long code typed as a number (4.50204002003E+11).
func sciNumber(v string) bool {
	i := strings.IndexAny(v, "eE")
	if i <= 0 || i+2 > len(v) || v[i+1] != '+' {
		return false
	}
	_, err := strconv.ParseFloat(v, 64)
	return err == nil
}

// integral gives back the digits of a code that an XLSX cell holds as a
// number in scientific notation (the cell's raw value is exact up to 15
// digits, so 4.50204002003E+11 is 450204002003); ok is false when the
// number is not a whole one of at most 15 digits.
func integral(v string) (string, bool) {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || x < 0 || x != math.Trunc(x) || x >= 1e15 {
		return v, false
	}
	return strconv.FormatFloat(x, 'f', -1, 64), true
}
