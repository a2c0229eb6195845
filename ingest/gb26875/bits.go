package gb26875

// SystemBits is the 2-byte state of a facility system (Figure 6). Bit 0 is 1 in normal operation and 0 in
// the test state, so a fire alarm from a system in normal operation is 0x0003.
type SystemBits uint16

// Bits of SystemBits.
const (
	SysNormal        SystemBits = 1 << 0  // 正常运行 (0: 测试状态)
	SysFire          SystemBits = 1 << 1  // 火警
	SysFault         SystemBits = 1 << 2  // 故障
	SysDisabled      SystemBits = 1 << 3  // 屏蔽
	SysSupervisory   SystemBits = 1 << 4  // 监管
	SysStarted       SystemBits = 1 << 5  // 启动 (0: 停止)
	SysFeedback      SystemBits = 1 << 6  // 反馈
	SysDelay         SystemBits = 1 << 7  // 延时状态
	SysMainPower     SystemBits = 1 << 8  // 主电故障
	SysBackupPower   SystemBits = 1 << 9  // 备电故障
	SysBus           SystemBits = 1 << 10 // 总线故障
	SysManual        SystemBits = 1 << 11 // 手动状态 (0: 自动)
	SysConfigChanged SystemBits = 1 << 12 // 配置改变
	SysReset         SystemBits = 1 << 13 // 复位
)

// Has reports whether every bit of m is set.
func (s SystemBits) Has(m SystemBits) bool { return s&m == m }

// Test reports the test state (bit 0 clear).
func (s SystemBits) Test() bool { return s&SysNormal == 0 }

// ComponentBits is the 2-byte state of a component (Figure 7): bits 0–7 as SystemBits, bit 8 power fault.
type ComponentBits uint16

// Bits of ComponentBits.
const (
	CompNormal      ComponentBits = 1 << 0 // 正常运行 (0: 测试状态)
	CompFire        ComponentBits = 1 << 1 // 火警
	CompFault       ComponentBits = 1 << 2 // 故障
	CompDisabled    ComponentBits = 1 << 3 // 屏蔽
	CompSupervisory ComponentBits = 1 << 4 // 监管
	CompStarted     ComponentBits = 1 << 5 // 启动 (开启)
	CompFeedback    ComponentBits = 1 << 6 // 反馈
	CompDelay       ComponentBits = 1 << 7 // 延时状态
	CompPower       ComponentBits = 1 << 8 // 电源故障
)

// Has reports whether every bit of m is set.
func (s ComponentBits) Has(m ComponentBits) bool { return s&m == m }

// Test reports the test state (bit 0 clear).
func (s ComponentBits) Test() bool { return s&CompNormal == 0 }

// OperationBits are the operations of a facility (Figure 9).
type OperationBits byte

// Bits of OperationBits.
const (
	OpReset       OperationBits = 1 << 0 // 复位
	OpSilence     OperationBits = 1 << 1 // 消音
	OpManualAlarm OperationBits = 1 << 2 // 手动报警
	OpAlarmClear  OperationBits = 1 << 3 // 警情消除
	OpSelfTest    OperationBits = 1 << 4 // 自检
	OpAcknowledge OperationBits = 1 << 5 // 确认
	OpTest        OperationBits = 1 << 6 // 测试
)

// UITDBits is the running state of a UITD (Figure 13).
type UITDBits byte

// Bits of UITDBits.
const (
	UITDNormal      UITDBits = 1 << 0 // 正常监视 (0: 测试状态)
	UITDFire        UITDBits = 1 << 1 // 火警
	UITDFault       UITDBits = 1 << 2 // 故障
	UITDMainPower   UITDBits = 1 << 3 // 主电故障
	UITDBackupPower UITDBits = 1 << 4 // 备电故障
	UITDLink        UITDBits = 1 << 5 // 与监控中心通信信道故障
	UITDLine        UITDBits = 1 << 6 // 监测连接线路故障
)

// UITDOperationBits are the operations on a UITD (Figure 14); bit 5 is the answer to a 查岗.
type UITDOperationBits byte

// Bits of UITDOperationBits.
const (
	UOpReset       UITDOperationBits = 1 << 0 // 复位
	UOpSilence     UITDOperationBits = 1 << 1 // 消音
	UOpManualAlarm UITDOperationBits = 1 << 2 // 手动报警
	UOpAlarmClear  UITDOperationBits = 1 << 3 // 警情消除
	UOpSelfTest    UITDOperationBits = 1 << 4 // 自检
	UOpDutyAnswer  UITDOperationBits = 1 << 5 // 查岗应答
	UOpTest        UITDOperationBits = 1 << 6 // 测试
)
