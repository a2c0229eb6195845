package devices

import (
	"strconv"

	"github.com/firewatch-iot/firewatch/internal/gbnames"
)

// pointName names a UITD's listed point as the dispatcher reads it: where the controller is (the UITD
// device's address), the system (Table 4 name and address), and for a component its type (Table 5 name,
// when the ledger gives the type) and its address in hex, e.g.
// "柳石家园 消防控制室 火灾报警系统1 点型光电感烟火灾探测器 0x00000105". The codec names points the same
// way (gb26875.Component.AppendText).
func pointName(where string, p FacilityPoint, typ *int) string {
	b := make([]byte, 0, 96)
	if where != "" {
		b = append(append(b, where...), ' ')
	}
	if n := gbnames.SystemType(p.SystemType); n != "" {
		b = append(b, n...)
	} else {
		b = append(strconv.AppendInt(append(b, "系统类型"...), int64(p.SystemType), 10), '/')
	}
	b = strconv.AppendInt(b, int64(p.SystemAddr), 10)
	if !p.Component {
		return string(b)
	}
	if typ != nil {
		b = append(b, ' ')
		if n := gbnames.ComponentType(byte(*typ)); n != "" {
			b = append(b, n...)
		} else {
			b = strconv.AppendInt(append(b, "部件类型"...), int64(*typ), 10)
		}
	}
	b = append(b, " 0x"...)
	h := strconv.FormatUint(uint64(p.Addr), 16)
	for range 8 - len(h) {
		b = append(b, '0')
	}
	return string(append(b, h...))
}
