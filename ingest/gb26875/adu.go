package gb26875

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// TypeFlag is the type flag (类型标志, Table 3) that opens an ADU.
type TypeFlag byte

// Upload types (UITD → centre, with 发送数据 or as the 应答 to a read).
const (
	TypeSystemState      TypeFlag = 1  // 上传建筑消防设施系统状态
	TypeComponentState   TypeFlag = 2  // 上传建筑消防设施部件运行状态
	TypeAnalog           TypeFlag = 3  // 上传建筑消防设施部件模拟量值
	TypeOperation        TypeFlag = 4  // 上传建筑消防设施操作信息
	TypeSoftwareVersion  TypeFlag = 5  // 上传建筑消防设施软件版本
	TypeSystemConfig     TypeFlag = 6  // 上传建筑消防设施系统配置情况
	TypeComponentConfig  TypeFlag = 7  // 上传建筑消防设施部件配置情况
	TypeSystemTime       TypeFlag = 8  // 上传建筑消防设施系统时间
	TypeUITDState        TypeFlag = 21 // 上传用户信息传输装置运行状态
	TypeUITDOperation    TypeFlag = 24 // 上传用户信息传输装置操作信息
	TypeUITDVersion      TypeFlag = 25 // 上传用户信息传输装置软件版本
	TypeUITDConfig       TypeFlag = 26 // 上传用户信息传输装置配置情况
	TypeUITDTime         TypeFlag = 28 // 上传用户信息传输装置系统时间
	TypeReadSystemState  TypeFlag = 61 // 读建筑消防设施系统状态
	TypeReadComponent    TypeFlag = 62 // 读建筑消防设施部件运行状态
	TypeReadAnalog       TypeFlag = 63 // 读建筑消防设施部件模拟量值
	TypeReadOperations   TypeFlag = 64 // 读建筑消防设施操作信息
	TypeReadVersion      TypeFlag = 65 // 读建筑消防设施软件版本
	TypeReadSystemConfig TypeFlag = 66 // 读建筑消防设施系统配置情况
	TypeReadCompConfig   TypeFlag = 67 // 读建筑消防设施部件配置情况
	TypeReadSystemTime   TypeFlag = 68 // 读建筑消防设施系统时间
	TypeReadUITDState    TypeFlag = 81 // 读用户信息传输装置运行状态
	TypeReadUITDOps      TypeFlag = 84 // 读用户信息传输装置操作信息记录
	TypeReadUITDVersion  TypeFlag = 85 // 读用户信息传输装置软件版本
	TypeReadUITDConfig   TypeFlag = 86 // 读用户信息传输装置配置情况
	TypeReadUITDTime     TypeFlag = 88 // 读用户信息传输装置系统时间
	TypeInitUITD         TypeFlag = 89 // 初始化用户信息传输装置
	TypeSyncClock        TypeFlag = 90 // 同步用户信息传输装置时钟
	TypeDutyCheck        TypeFlag = 91 // 查岗命令
)

// ADU errors. ErrType: a type flag this package does not decode; ErrADU: an ADU whose length does not
// match its type and object count, or a count above the type's limit.
var (
	ErrType = errors.New("gb26875: unknown or unexpected type flag")
	ErrADU  = errors.New("gb26875: malformed application data unit")
)

// Object sizes in bytes, time labels included (§8.3.1).
const (
	sizeSystemState     = 4 + 6
	sizeComponentState  = 40 + 6
	sizeAnalog          = 10 + 6
	sizeOperation       = 4 + 6
	sizeSoftwareVersion = 4
	sizeComponentConfig = 38
	sizeSystemTime      = 2 + 6
	sizeUITDState       = 1 + 6
	sizeUITDOperation   = 2 + 6
	sizeUITDVersion     = 2
	sizeUITDTime        = 6
)

// System is a building fire-protection system (建筑消防设施系统): its type (Table 4) and address.
type System struct {
	Type byte
	Addr byte
}

// Component is a component (部件) of a system: system, component type (Table 5) and 4-byte address (read
// little-endian, as the control unit's integers).
type Component struct {
	System
	Type byte
	Addr uint32
}

// SystemState is one object of type 1.
type SystemState struct {
	System
	State SystemBits
	Time  TimeLabel
}

// ComponentState is one object of type 2.
type ComponentState struct {
	Component
	State ComponentBits
	Desc  [DescLen]byte // GB 18030, see Text
	Time  TimeLabel
}

// Analog is one object of type 3: a raw value of an analog type (Table 6).
type Analog struct {
	Component
	Kind AnalogType
	Raw  int16
	Time TimeLabel
}

// Operation is one object of type 4 (操作信息 of a facility).
type Operation struct {
	System
	Ops      OperationBits
	Operator byte
	Time     TimeLabel
}

// Version is a software version (types 5 and 25); System is zero for the UITD's own.
type Version struct {
	System
	Major, Minor byte
}

// SystemConfig is one object of type 6. Text aliases the frame (GB 18030, see Text).
type SystemConfig struct {
	System
	Text []byte
}

// ComponentConfig is one object of type 7.
type ComponentConfig struct {
	Component
	Desc [DescLen]byte
}

// SystemTime is the body of type 8.
type SystemTime struct {
	System
	Time TimeLabel
}

// UITDState is the object of type 21.
type UITDState struct {
	State UITDBits
	Time  TimeLabel
}

// UITDOperation is one object of type 24.
type UITDOperation struct {
	Ops      UITDOperationBits
	Operator byte
	Time     TimeLabel
}

// Upload is the decoded ADU of a 发送数据 or 应答 frame. Only the slice (or field) of Type is filled.
// Unmarshal reuses the slices, so one Upload per connection decodes status frames without allocating;
// Text fields alias the frame. Type 0 with nothing filled is an empty ADU (a keep-alive: some UITDs send
// 发送数据 with no ADU as a heartbeat).
type Upload struct {
	Type             TypeFlag
	SystemStates     []SystemState     // 1
	ComponentStates  []ComponentState  // 2
	Analogs          []Analog          // 3
	Operations       []Operation       // 4
	Version          Version           // 5, 25
	SystemConfigs    []SystemConfig    // 6
	ComponentConfigs []ComponentConfig // 7
	SystemTime       SystemTime        // 8 (System zero for 28)
	UITDStates       []UITDState       // 21
	UITDOperations   []UITDOperation   // 24
	UITDConfig       []byte            // 26, GB 18030
}

// Reset empties u, keeping its slices' capacity.
func (u *Upload) Reset() {
	*u = Upload{
		SystemStates:     u.SystemStates[:0],
		ComponentStates:  u.ComponentStates[:0],
		Analogs:          u.Analogs[:0],
		Operations:       u.Operations[:0],
		SystemConfigs:    u.SystemConfigs[:0],
		ComponentConfigs: u.ComponentConfigs[:0],
		UITDStates:       u.UITDStates[:0],
		UITDOperations:   u.UITDOperations[:0],
	}
}

// Len is the number of objects decoded (1 for the single-body types, 0 for an empty ADU).
func (u *Upload) Len() int {
	switch u.Type {
	case TypeSystemState:
		return len(u.SystemStates)
	case TypeComponentState:
		return len(u.ComponentStates)
	case TypeAnalog:
		return len(u.Analogs)
	case TypeOperation:
		return len(u.Operations)
	case TypeSystemConfig:
		return len(u.SystemConfigs)
	case TypeComponentConfig:
		return len(u.ComponentConfigs)
	case TypeUITDState:
		return len(u.UITDStates)
	case TypeUITDOperation:
		return len(u.UITDOperations)
	case TypeSoftwareVersion, TypeSystemTime, TypeUITDVersion, TypeUITDConfig, TypeUITDTime:
		return 1
	}
	return 0
}

func fixed(adu []byte, size, max int) (n int, err error) {
	n = int(adu[1])
	if n > max {
		return 0, fmt.Errorf("%w: type %d with %d objects, at most %d", ErrADU, adu[0], n, max)
	}
	if len(adu) != 2+n*size {
		return 0, fmt.Errorf("%w: type %d with %d objects of %d bytes in %d bytes", ErrADU, adu[0], n, size, len(adu))
	}
	return n, nil
}

func one(adu []byte, size int) error {
	if adu[1] != 1 || len(adu) != 2+size {
		return fmt.Errorf("%w: type %d: want 1 object of %d bytes, got count %d in %d bytes", ErrADU, adu[0], size, adu[1], len(adu))
	}
	return nil
}

func readComponent(b []byte) Component {
	return Component{System: System{b[0], b[1]}, Type: b[2], Addr: binary.LittleEndian.Uint32(b[3:])}
}

// Unmarshal decodes the ADU of an upload into u (after Reset). Counts above the standard's limits and
// lengths that do not match the count are ErrADU; type flags other than the uploads are ErrType.
func (u *Upload) Unmarshal(adu []byte) error {
	u.Reset()
	if len(adu) == 0 {
		return nil
	}
	if len(adu) < 2 {
		return fmt.Errorf("%w: %d byte", ErrADU, len(adu))
	}
	u.Type = TypeFlag(adu[0])
	var err error
	switch u.Type {
	case TypeSystemState:
		err = u.systemStates(adu)
	case TypeComponentState:
		err = u.componentStates(adu)
	case TypeAnalog:
		var n int
		if n, err = fixed(adu, sizeAnalog, 63); err == nil {
			for i := range n {
				b := adu[2+i*sizeAnalog:]
				a := Analog{Component: readComponent(b), Kind: AnalogType(b[7]), Raw: int16(binary.LittleEndian.Uint16(b[8:]))}
				copy(a.Time[:], b[10:16])
				u.Analogs = append(u.Analogs, a)
			}
		}
	case TypeOperation:
		var n int
		if n, err = fixed(adu, sizeOperation, 102); err == nil {
			for i := range n {
				b := adu[2+i*sizeOperation:]
				o := Operation{System: System{b[0], b[1]}, Ops: OperationBits(b[2]), Operator: b[3]}
				copy(o.Time[:], b[4:10])
				u.Operations = append(u.Operations, o)
			}
		}
	case TypeSoftwareVersion:
		if err = one(adu, sizeSoftwareVersion); err == nil {
			u.Version = Version{System{adu[2], adu[3]}, adu[4], adu[5]}
		}
	case TypeSystemConfig:
		err = u.systemConfigs(adu)
	case TypeComponentConfig:
		var n int
		if n, err = fixed(adu, sizeComponentConfig, 26); err == nil {
			for i := range n {
				b := adu[2+i*sizeComponentConfig:]
				c := ComponentConfig{Component: readComponent(b)}
				copy(c.Desc[:], b[7:38])
				u.ComponentConfigs = append(u.ComponentConfigs, c)
			}
		}
	case TypeSystemTime:
		if err = one(adu, sizeSystemTime); err == nil {
			u.SystemTime.System = System{adu[2], adu[3]}
			copy(u.SystemTime.Time[:], adu[4:10])
		}
	case TypeUITDState:
		// The figure shows one object; a UITD sending several is accepted.
		var n int
		if n, err = fixed(adu, sizeUITDState, 146); err == nil {
			for i := range n {
				b := adu[2+i*sizeUITDState:]
				s := UITDState{State: UITDBits(b[0])}
				copy(s.Time[:], b[1:7])
				u.UITDStates = append(u.UITDStates, s)
			}
		}
	case TypeUITDOperation:
		var n int
		if n, err = fixed(adu, sizeUITDOperation, 127); err == nil {
			for i := range n {
				b := adu[2+i*sizeUITDOperation:]
				o := UITDOperation{Ops: UITDOperationBits(b[0]), Operator: b[1]}
				copy(o.Time[:], b[2:8])
				u.UITDOperations = append(u.UITDOperations, o)
			}
		}
	case TypeUITDVersion:
		if err = one(adu, sizeUITDVersion); err == nil {
			u.Version = Version{Major: adu[2], Minor: adu[3]}
		}
	case TypeUITDConfig:
		if adu[1] != 1 || len(adu) < 3 || len(adu) != 3+int(adu[2]) {
			err = fmt.Errorf("%w: type 26: count %d, %d bytes", ErrADU, adu[1], len(adu))
		} else {
			u.UITDConfig = adu[3:len(adu):len(adu)]
		}
	case TypeUITDTime:
		if err = one(adu, sizeUITDTime); err == nil {
			copy(u.SystemTime.Time[:], adu[2:8])
		}
	default:
		err = fmt.Errorf("%w: %d in an upload", ErrType, adu[0])
	}
	if err != nil {
		u.Reset()
	}
	return err
}

func (u *Upload) systemStates(adu []byte) error {
	n, err := fixed(adu, sizeSystemState, 102)
	if err != nil {
		return err
	}
	for i := range n {
		b := adu[2+i*sizeSystemState:]
		s := SystemState{System: System{b[0], b[1]}, State: SystemBits(binary.LittleEndian.Uint16(b[2:]))}
		copy(s.Time[:], b[4:10])
		u.SystemStates = append(u.SystemStates, s)
	}
	return nil
}

func (u *Upload) componentStates(adu []byte) error {
	n, err := fixed(adu, sizeComponentState, 22)
	if err != nil {
		return err
	}
	for i := range n {
		b := adu[2+i*sizeComponentState:]
		u.ComponentStates = append(u.ComponentStates, ComponentState{})
		c := &u.ComponentStates[len(u.ComponentStates)-1]
		c.Component = readComponent(b)
		c.State = ComponentBits(binary.LittleEndian.Uint16(b[7:]))
		copy(c.Desc[:], b[9:40])
		copy(c.Time[:], b[40:46])
	}
	return nil
}

func (u *Upload) systemConfigs(adu []byte) error {
	n := int(adu[1])
	if n > 3 {
		return fmt.Errorf("%w: type 6 with %d objects, at most 3", ErrADU, n)
	}
	b := adu[2:]
	for range n {
		if len(b) < 3 || len(b) < 3+int(b[2]) {
			return fmt.Errorf("%w: type 6 object truncated", ErrADU)
		}
		l := 3 + int(b[2])
		u.SystemConfigs = append(u.SystemConfigs, SystemConfig{System: System{b[0], b[1]}, Text: b[3:l:l]})
		b = b[l:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: type 6 with %d bytes after its objects", ErrADU, len(b))
	}
	return nil
}

// Append appends the ADU of u (type u.Type, the objects of that type) to dst: what a UITD sends. It is the
// inverse of Unmarshal; counts above the standard's limits are an error.
func (u *Upload) Append(dst []byte) ([]byte, error) {
	le16 := func(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }
	comp := func(b []byte, c Component) []byte {
		return binary.LittleEndian.AppendUint32(append(b, c.System.Type, c.System.Addr, c.Type), c.Addr)
	}
	limit := func(n, max int) error {
		if n > max {
			return fmt.Errorf("%w: type %d with %d objects, at most %d", ErrADU, u.Type, n, max)
		}
		return nil
	}
	var err error
	switch u.Type {
	case 0:
		return dst, nil
	case TypeSystemState:
		if err = limit(len(u.SystemStates), 102); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.SystemStates)))
			for _, s := range u.SystemStates {
				dst = append(le16(append(dst, s.System.Type, s.System.Addr), uint16(s.State)), s.Time[:]...)
			}
		}
	case TypeComponentState:
		if err = limit(len(u.ComponentStates), 22); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.ComponentStates)))
			for _, c := range u.ComponentStates {
				dst = append(append(le16(comp(dst, c.Component), uint16(c.State)), c.Desc[:]...), c.Time[:]...)
			}
		}
	case TypeAnalog:
		if err = limit(len(u.Analogs), 63); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.Analogs)))
			for _, a := range u.Analogs {
				dst = append(le16(append(comp(dst, a.Component), byte(a.Kind)), uint16(a.Raw)), a.Time[:]...)
			}
		}
	case TypeOperation:
		if err = limit(len(u.Operations), 102); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.Operations)))
			for _, o := range u.Operations {
				dst = append(append(dst, o.System.Type, o.System.Addr, byte(o.Ops), o.Operator), o.Time[:]...)
			}
		}
	case TypeSoftwareVersion:
		dst = append(dst, byte(u.Type), 1, u.Version.System.Type, u.Version.System.Addr, u.Version.Major, u.Version.Minor)
	case TypeSystemConfig:
		if err = limit(len(u.SystemConfigs), 3); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.SystemConfigs)))
			for _, c := range u.SystemConfigs {
				if len(c.Text) > 255 {
					return dst, fmt.Errorf("%w: configuration text of %d bytes", ErrADU, len(c.Text))
				}
				dst = append(append(dst, c.System.Type, c.System.Addr, byte(len(c.Text))), c.Text...)
			}
		}
	case TypeComponentConfig:
		if err = limit(len(u.ComponentConfigs), 26); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.ComponentConfigs)))
			for _, c := range u.ComponentConfigs {
				dst = append(comp(dst, c.Component), c.Desc[:]...)
			}
		}
	case TypeSystemTime:
		dst = append(append(dst, byte(u.Type), 1, u.SystemTime.System.Type, u.SystemTime.System.Addr), u.SystemTime.Time[:]...)
	case TypeUITDState:
		if err = limit(len(u.UITDStates), 146); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.UITDStates)))
			for _, s := range u.UITDStates {
				dst = append(append(dst, byte(s.State)), s.Time[:]...)
			}
		}
	case TypeUITDOperation:
		if err = limit(len(u.UITDOperations), 127); err == nil {
			dst = append(dst, byte(u.Type), byte(len(u.UITDOperations)))
			for _, o := range u.UITDOperations {
				dst = append(append(dst, byte(o.Ops), o.Operator), o.Time[:]...)
			}
		}
	case TypeUITDVersion:
		dst = append(dst, byte(u.Type), 1, u.Version.Major, u.Version.Minor)
	case TypeUITDConfig:
		if len(u.UITDConfig) > 255 {
			return dst, fmt.Errorf("%w: configuration text of %d bytes", ErrADU, len(u.UITDConfig))
		}
		dst = append(append(dst, byte(u.Type), 1, byte(len(u.UITDConfig))), u.UITDConfig...)
	case TypeUITDTime:
		dst = append(append(dst, byte(u.Type), 1), u.SystemTime.Time[:]...)
	default:
		err = fmt.Errorf("%w: %d is not an upload", ErrType, u.Type)
	}
	return dst, err
}
