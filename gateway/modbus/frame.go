package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Function codes the master speaks.
const (
	FuncReadCoils            byte   = 0x01
	FuncReadDiscreteInputs   byte   = 0x02
	FuncReadHoldingRegisters byte   = 0x03
	FuncReadInputRegisters   byte   = 0x04
	FuncWriteSingleCoil      byte   = 0x05
	FuncWriteSingleRegister  byte   = 0x06
	exceptionBit             byte   = 0x80
	maxBits                         = 2000 // coils/inputs per read (spec)
	maxRegisters                    = 125  // registers per read (spec)
	maxFrame                        = 256  // RTU ADU limit
	requestLen                      = 8    // every request of functions 1–6
	exceptionLen                    = 5
	coilOn                   uint16 = 0xFF00
)

// Errors a request can end with. Frame errors are counted by kind in Stats.
var (
	ErrTimeout  = errors.New("modbus: no response within the timeout")
	ErrCRC      = errors.New("modbus: response CRC mismatch")
	ErrLength   = errors.New("modbus: response has the wrong length")
	ErrAddress  = errors.New("modbus: response from another slave address")
	ErrFunction = errors.New("modbus: response to another function")
	ErrEcho     = errors.New("modbus: write response does not echo the request")
	ErrRequest  = errors.New("modbus: invalid request")
	ErrNoise    = errors.New("modbus: the line did not fall silent before the request")
)

// Exception is a Modbus exception response: the slave understood the request
// and refused it.
type Exception struct {
	Function byte
	Code     byte
}

var exceptionNames = map[byte]string{
	1: "illegal function", 2: "illegal data address", 3: "illegal data value",
	4: "slave device failure", 5: "acknowledge (busy with a long operation)", 6: "slave device busy",
	8: "memory parity error", 0x0A: "gateway path unavailable", 0x0B: "gateway target device failed to respond",
}

func (e *Exception) Error() string {
	name, ok := exceptionNames[e.Code]
	if !ok {
		name = "unknown exception"
	}
	return fmt.Sprintf("modbus: exception %d (%s) to function 0x%02x", e.Code, name, e.Function)
}

// Request is one request of functions 0x01–0x06. For reads Value is the
// quantity (coils, inputs or registers); for writes it is the value (a coil
// is 0xFF00 for on, 0x0000 for off).
type Request struct {
	Slave    byte
	Function byte
	Address  uint16
	Value    uint16
}

// Validate checks the request against the protocol's limits.
func (r Request) Validate() error {
	if r.Slave == 0 || r.Slave > 247 {
		return fmt.Errorf("%w: slave address %d outside 1…247", ErrRequest, r.Slave)
	}
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs:
		if r.Value < 1 || r.Value > maxBits {
			return fmt.Errorf("%w: %d bits outside 1…%d", ErrRequest, r.Value, maxBits)
		}
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		if r.Value < 1 || r.Value > maxRegisters {
			return fmt.Errorf("%w: %d registers outside 1…%d", ErrRequest, r.Value, maxRegisters)
		}
	case FuncWriteSingleCoil:
		if r.Value != coilOn && r.Value != 0 {
			return fmt.Errorf("%w: coil value 0x%04x is neither 0xFF00 nor 0", ErrRequest, r.Value)
		}
	case FuncWriteSingleRegister:
	default:
		return fmt.Errorf("%w: function 0x%02x not supported", ErrRequest, r.Function)
	}
	if isRead(r.Function) && int(r.Address)+int(r.Value) > 0x10000 {
		return fmt.Errorf("%w: address %d + %d past 65535", ErrRequest, r.Address, r.Value)
	}
	return nil
}

func isRead(f byte) bool { return f >= FuncReadCoils && f <= FuncReadInputRegisters }

// Append appends the request's RTU frame (with CRC) to b.
func (r Request) Append(b []byte) []byte {
	b = append(b, r.Slave, r.Function, byte(r.Address>>8), byte(r.Address), byte(r.Value>>8), byte(r.Value))
	return AppendCRC(b)
}

// ResponseLen is the length of a normal response to r.
func (r Request) ResponseLen() int {
	switch r.Function {
	case FuncReadCoils, FuncReadDiscreteInputs:
		return 5 + (int(r.Value)+7)/8
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		return 5 + 2*int(r.Value)
	}
	return requestLen // writes echo the request
}

// FrameLen returns the full length of the response frame whose first bytes
// are head, or 0 when more bytes are needed to tell. It trusts the byte
// count of a read response (Decode checks it against the request).
func FrameLen(head []byte) int {
	if len(head) < 2 {
		return 0
	}
	f := head[1]
	switch {
	case f&exceptionBit != 0:
		return exceptionLen
	case isRead(f):
		if len(head) < 3 {
			return 0
		}
		return 5 + int(head[2])
	default:
		return requestLen
	}
}

// Decode checks a complete response frame against the request and returns
// its data: the register or bit bytes of a read (without the byte count),
// nil for a write. The returned slice aliases frame.
func Decode(r Request, frame []byte) ([]byte, error) {
	if len(frame) < exceptionLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrLength, len(frame))
	}
	if !checkCRC(frame) {
		return nil, ErrCRC
	}
	if frame[0] != r.Slave {
		return nil, fmt.Errorf("%w: got %d, asked %d", ErrAddress, frame[0], r.Slave)
	}
	if frame[1] == r.Function|exceptionBit {
		if len(frame) != exceptionLen {
			return nil, fmt.Errorf("%w: exception frame of %d bytes", ErrLength, len(frame))
		}
		return nil, &Exception{Function: r.Function, Code: frame[2]}
	}
	if frame[1] != r.Function {
		return nil, fmt.Errorf("%w: got 0x%02x, asked 0x%02x", ErrFunction, frame[1], r.Function)
	}
	if want := r.ResponseLen(); len(frame) != want {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrLength, len(frame), want)
	}
	if isRead(r.Function) {
		if int(frame[2]) != len(frame)-5 {
			return nil, fmt.Errorf("%w: byte count %d in a frame of %d bytes", ErrLength, frame[2], len(frame))
		}
		return frame[3 : len(frame)-2], nil
	}
	if binary.BigEndian.Uint16(frame[2:]) != r.Address || binary.BigEndian.Uint16(frame[4:]) != r.Value {
		return nil, ErrEcho
	}
	return nil, nil
}

// Registers decodes big-endian 16-bit registers from data into dst.
func Registers(dst []uint16, data []byte) []uint16 {
	for i := 0; i+1 < len(data); i += 2 {
		dst = append(dst, binary.BigEndian.Uint16(data[i:]))
	}
	return dst
}

// Bit returns bit i of the packed coil/input data (LSB of the first byte is
// the first bit).
func Bit(data []byte, i int) bool { return data[i/8]>>(i%8)&1 != 0 }

// ParseRequest decodes a request frame of functions 0x01–0x06, for a slave.
// It checks the CRC and the length, not the protocol limits: the slave
// answers those with exception 3.
func ParseRequest(frame []byte) (Request, error) {
	if len(frame) != requestLen {
		return Request{}, fmt.Errorf("%w: request of %d bytes", ErrLength, len(frame))
	}
	if !checkCRC(frame) {
		return Request{}, ErrCRC
	}
	return Request{
		Slave: frame[0], Function: frame[1],
		Address: binary.BigEndian.Uint16(frame[2:]), Value: binary.BigEndian.Uint16(frame[4:]),
	}, nil
}

// AppendException appends an exception response to r with code to b.
func AppendException(b []byte, r Request, code byte) []byte {
	return AppendCRC(append(b, r.Slave, r.Function|exceptionBit, code))
}

// AppendReadResponse appends a read response carrying data (register bytes
// big-endian, or packed bits) to b.
func AppendReadResponse(b []byte, r Request, data []byte) []byte {
	b = append(b, r.Slave, r.Function, byte(len(data)))
	return AppendCRC(append(b, data...))
}
