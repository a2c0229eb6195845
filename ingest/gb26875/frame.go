package gb26875

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Frame geometry (GB/T 26875.3 Table 1). Offsets are 0-based.
const (
	HeaderLen   = 27   // start (2) + control unit (25): everything before the ADU
	TrailerLen  = 3    // checksum (1) + end (2)
	MinFrameLen = 30   // a frame with an empty ADU (确认, 否认)
	MaxADU      = 1024 // §6.6: the ADU length is at most 1024
	MaxFrameLen = MinFrameLen + MaxADU

	startByte = '@' // 0x40
	endByte   = '#' // 0x23
	offLen    = 24  // ADU length, uint16 LE
	offCmd    = 26
)

// Command is the command byte (命令字节, Table 2).
type Command byte

// Command bytes of Table 2; 0 and 7–127 are reserved, 128–255 user-defined.
const (
	CmdControl Command = 1 // 控制命令: centre → UITD (clock sync, 初始化, 查岗)
	CmdSend    Command = 2 // 发送数据: UITD → centre alarms and states
	CmdConfirm Command = 3 // 确认
	CmdRequest Command = 4 // 请求: centre → UITD reads
	CmdReply   Command = 5 // 应答: the answer to a 请求
	CmdDeny    Command = 6 // 否认
)

// Known reports whether c is one of the six commands the standard defines.
func (c Command) Known() bool { return c >= CmdControl && c <= CmdDeny }

// Errors by the reason a frame is refused; the standard answers each with 否认 (§6.5) and callers count them
// by reason. Errors returned by Parse wrap exactly one of these.
var (
	ErrShort    = errors.New("gb26875: frame shorter than 30 bytes")
	ErrStart    = errors.New("gb26875: start characters are not @@")
	ErrTooLong  = errors.New("gb26875: ADU longer than 1024 bytes")
	ErrLength   = errors.New("gb26875: frame length does not match the ADU length field")
	ErrEnd      = errors.New("gb26875: end characters are not ##")
	ErrChecksum = errors.New("gb26875: checksum mismatch")
	ErrCommand  = errors.New("gb26875: unknown command byte")
)

// Reason is a short stable name of a frame or ADU error, for a metric label; "" for nil and "other" for an
// error this package did not make.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrShort):
		return "short"
	case errors.Is(err, ErrStart):
		return "start"
	case errors.Is(err, ErrTooLong):
		return "too_long"
	case errors.Is(err, ErrLength):
		return "length"
	case errors.Is(err, ErrEnd):
		return "end"
	case errors.Is(err, ErrChecksum):
		return "checksum"
	case errors.Is(err, ErrCommand):
		return "command"
	case errors.Is(err, ErrType):
		return "type"
	case errors.Is(err, ErrADU):
		return "adu"
	}
	return "other"
}

// Address is a 6-byte centre or UITD address (源地址/目的地址) exactly as it is on the wire (the standard
// says "low byte first"; the bytes are kept in wire order, so no byte order is imposed on it).
type Address [6]byte

// String is the address as 12 hex digits in wire order, e.g. "010203040506".
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// Uint64 is the address read as a 48-bit little-endian integer (how several implementations print it).
func (a Address) Uint64() uint64 {
	var b [8]byte
	copy(b[:], a[:])
	return binary.LittleEndian.Uint64(b[:])
}

// ParseAddress reads 12 hex digits in wire order (the form of String).
func ParseAddress(s string) (Address, error) {
	var a Address
	if len(s) != 12 {
		return a, fmt.Errorf("gb26875: address %q: want 12 hex digits", s)
	}
	if _, err := hex.Decode(a[:], []byte(s)); err != nil {
		return a, fmt.Errorf("gb26875: address %q: %w", s, err)
	}
	return a, nil
}

// Header is the control unit of a frame (bytes 3–27).
type Header struct {
	Serial  uint16    // 业务流水号: the initiator's number, echoed by the answer
	Major   byte      // 主版本号, 1 in GB/T 26875.3-2011 (not checked: accepted as sent)
	User    byte      // 用户版本号
	Time    TimeLabel // 时间标签: when the packet was sent
	Src     Address   // 源地址
	Dst     Address   // 目的地址
	Command Command   // 命令字节
}

// Frame is one parsed frame. ADU aliases the bytes it was parsed from.
type Frame struct {
	Header
	ADU []byte
}

// Len is the full length of a frame whose first bytes are b (30 + the ADU length field), or 0 when fewer
// than 27 bytes are given. It does not check the start characters or the length limit.
func Len(b []byte) int {
	if len(b) < HeaderLen {
		return 0
	}
	return MinFrameLen + int(binary.LittleEndian.Uint16(b[offLen:]))
}

// Parse parses exactly one frame from b into f. ADU aliases b. After ErrChecksum or ErrCommand the header
// is filled (so that a 否认 can echo the serial number) but must not be trusted; after the other errors it
// is filled as far as b allowed. Checks run in the order start, length limit, length, end, checksum,
// command. Parse allocates nothing.
func Parse(b []byte, f *Frame) error {
	f.ADU = nil
	if len(b) < MinFrameLen {
		f.Header = Header{}
		return fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	f.Header.read(b)
	if b[0] != startByte || b[1] != startByte {
		return ErrStart
	}
	n := int(binary.LittleEndian.Uint16(b[offLen:]))
	if n > MaxADU {
		return ErrTooLong
	}
	if len(b) != MinFrameLen+n {
		return ErrLength
	}
	if b[len(b)-2] != endByte || b[len(b)-1] != endByte {
		return ErrEnd
	}
	if Checksum(b[2:HeaderLen+n]) != b[HeaderLen+n] {
		return ErrChecksum
	}
	f.ADU = b[HeaderLen : HeaderLen+n : HeaderLen+n]
	if !f.Command.Known() {
		return ErrCommand
	}
	return nil
}

func (h *Header) read(b []byte) {
	h.Serial = binary.LittleEndian.Uint16(b[2:])
	h.Major, h.User = b[4], b[5]
	copy(h.Time[:], b[6:12])
	copy(h.Src[:], b[12:18])
	copy(h.Dst[:], b[18:24])
	h.Command = Command(b[offCmd])
}

// Checksum is the checksum of §6.6: the sum of the control unit and ADU bytes, modulo 256.
func Checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// AppendFrame appends the frame of h and adu to dst. The length field comes from len(adu), which must be
// at most MaxADU (the builders of this package never exceed it; a longer adu panics, as it is a bug).
func AppendFrame(dst []byte, h *Header, adu []byte) []byte {
	if len(adu) > MaxADU {
		panic(fmt.Sprintf("gb26875: ADU of %d bytes", len(adu)))
	}
	start := len(dst)
	dst = append(dst, startByte, startByte, byte(h.Serial), byte(h.Serial>>8), h.Major, h.User)
	dst = append(dst, h.Time[:]...)
	dst = append(dst, h.Src[:]...)
	dst = append(dst, h.Dst[:]...)
	dst = append(dst, byte(len(adu)), byte(len(adu)>>8), byte(h.Command))
	dst = append(dst, adu...)
	dst = append(dst, Checksum(dst[start+2:]))
	return append(dst, endByte, endByte)
}

// Answer is the header of the answer to req sent at t: the same serial number and version, source and
// destination swapped (§6.4: the answering side echoes the initiator's serial number).
func Answer(req *Header, cmd Command, t TimeLabel) Header {
	return Header{Serial: req.Serial, Major: req.Major, User: req.User, Time: t, Src: req.Dst, Dst: req.Src, Command: cmd}
}

// AppendConfirm appends the 确认 (command 3, empty ADU) of req, sent at t.
func AppendConfirm(dst []byte, req *Header, t TimeLabel) []byte {
	h := Answer(req, CmdConfirm, t)
	return AppendFrame(dst, &h, nil)
}

// AppendDeny appends the 否认 (command 6, empty ADU) of req, sent at t.
func AppendDeny(dst []byte, req *Header, t TimeLabel) []byte {
	h := Answer(req, CmdDeny, t)
	return AppendFrame(dst, &h, nil)
}
