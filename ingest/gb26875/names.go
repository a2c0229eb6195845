package gb26875

import "strconv"

// Chinese names of the state and operation bits, for texts shown to people (alarm texts are zh-CN).
var (
	systemBitNames    = [14]string{"", "火警", "故障", "屏蔽", "监管", "启动", "反馈", "延时", "主电故障", "备电故障", "总线故障", "手动", "配置改变", "复位"}
	componentBitNames = [9]string{"", "火警", "故障", "屏蔽", "监管", "启动", "反馈", "延时", "电源故障"}
	uitdBitNames      = [7]string{"", "火警", "故障", "主电故障", "备电故障", "通信信道故障", "监测连接线路故障"}
	opBitNames        = [7]string{"复位", "消音", "手动报警", "警情消除", "自检", "确认", "测试"}
	uitdOpBitNames    = [7]string{"复位", "消音", "手动报警", "警情消除", "自检", "查岗应答", "测试"}
)

// appendBits appends the names of the set bits of v (bit 0 named by bit0 when clear, e.g. 测试) separated
// by sep, or none when nothing is set.
func appendBits(dst []byte, v uint16, names []string, normalBit bool, sep string) []byte {
	first := true
	add := func(s string) {
		if !first {
			dst = append(dst, sep...)
		}
		dst = append(dst, s...)
		first = false
	}
	if normalBit && v&1 == 0 {
		add("测试")
	}
	for i, n := range names {
		if n != "" && v&(1<<i) != 0 && !(normalBit && i == 0) {
			add(n)
		}
	}
	if first {
		add("正常")
	}
	return dst
}

// AppendText appends the Chinese names of the set bits, e.g. "火警、故障"; "正常" when none is set, "测试"
// first in the test state.
func (s SystemBits) AppendText(dst []byte) []byte {
	return appendBits(dst, uint16(s), systemBitNames[:], true, "、")
}

// AppendText appends the Chinese names of the set bits (see SystemBits.AppendText).
func (s ComponentBits) AppendText(dst []byte) []byte {
	return appendBits(dst, uint16(s), componentBitNames[:], true, "、")
}

// AppendText appends the Chinese names of the set bits (see SystemBits.AppendText).
func (s UITDBits) AppendText(dst []byte) []byte {
	return appendBits(dst, uint16(s), uitdBitNames[:], true, "、")
}

// AppendText appends the Chinese names of the operations, "正常" for none.
func (o OperationBits) AppendText(dst []byte) []byte {
	return appendBits(dst, uint16(o), opBitNames[:], false, "、")
}

// AppendText appends the Chinese names of the operations, "正常" for none.
func (o UITDOperationBits) AppendText(dst []byte) []byte {
	return appendBits(dst, uint16(o), uitdOpBitNames[:], false, "、")
}

// AppendText appends how people name the system: its type name and address, e.g. "火灾报警系统1"
// ("系统类型200/3" for type 200, which has no name, at address 3).
func (s System) AppendText(dst []byte) []byte {
	if n := SystemTypeName(s.Type); n != "" {
		dst = append(dst, n...)
	} else {
		dst = append(strconv.AppendInt(append(dst, "系统类型"...), int64(s.Type), 10), '/')
	}
	return strconv.AppendInt(dst, int64(s.Addr), 10)
}

// AppendText appends how the dispatcher's text names a point: system, component type and address in hex,
// e.g. "火灾报警系统1 点型光电感烟火灾探测器 0x00000105".
func (c Component) AppendText(dst []byte) []byte {
	dst = append(c.System.AppendText(dst), ' ')
	if n := ComponentTypeName(c.Type); n != "" {
		dst = append(dst, n...)
	} else {
		dst = strconv.AppendInt(append(dst, "部件类型"...), int64(c.Type), 10)
	}
	dst = append(dst, " 0x"...)
	h := strconv.FormatUint(uint64(c.Addr), 16)
	for range 8 - len(h) {
		dst = append(dst, '0')
	}
	return append(dst, h...)
}
