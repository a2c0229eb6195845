package modbus

import (
	"errors"
	"io"
	"testing"
)

// FuzzDecode feeds arbitrary bytes as the response to a request to the
// frame decoder: it may not panic, and a frame it accepts must be
// consistent with the request. TestMasterNeverWedges drives the same kind
// of garbage through the master's read loop.
func FuzzDecode(f *testing.F) {
	good := AppendReadResponse(nil, Request{Slave: 1, Function: 3, Address: 0, Value: 2}, []byte{0, 1, 0, 2})
	f.Add(byte(1), byte(3), uint16(0), uint16(2), good)
	f.Add(byte(1), byte(4), uint16(0), uint16(2), AppendException(nil, Request{Slave: 1, Function: 4}, 2))
	f.Add(byte(1), byte(1), uint16(0), uint16(9), AppendReadResponse(nil, Request{Slave: 1, Function: 1, Value: 9}, []byte{0xFF, 0x01}))
	f.Add(byte(7), byte(5), uint16(3), uint16(0xFF00), Request{Slave: 7, Function: 5, Address: 3, Value: 0xFF00}.Append(nil))
	f.Add(byte(1), byte(3), uint16(0), uint16(2), good[:5])
	f.Add(byte(1), byte(3), uint16(0), uint16(2), []byte{1, 3, 255, 0, 0})
	f.Fuzz(func(t *testing.T, slave, fn byte, addr, value uint16, frame []byte) {
		r := Request{Slave: slave, Function: fn, Address: addr, Value: value}
		FrameLen(frame)
		ParseRequest(frame)
		data, err := Decode(r, frame)
		if err == nil {
			if isRead(fn) && len(data) != r.ResponseLen()-5 {
				t.Fatalf("decoded %d data bytes for %+v", len(data), r)
			}
			if !checkCRC(frame) || frame[0] != slave {
				t.Fatal("accepted a frame with a bad CRC or address")
			}
		}
	})
}

// scripted is a port that answers a request with data, then silence.
// Before the request the line is silent (the master listens for silence
// first).
type scripted struct {
	data    []byte
	off     int
	written bool
}

func (s *scripted) Write(b []byte) (int, error) { s.written = true; return len(b), nil }

func (s *scripted) Read(b []byte) (int, error) {
	if !s.written || s.off >= len(s.data) {
		return 0, io.EOF // a serial read timeout
	}
	n := copy(b, s.data[s.off:])
	s.off += n
	return n, nil
}

func TestCRC(t *testing.T) {
	// The specification's example: read holding registers 0x006B, 3, from slave 0x11.
	got := Request{Slave: 0x11, Function: 3, Address: 0x6B, Value: 3}.Append(nil)
	want := []byte{0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87}
	if string(got) != string(want) {
		t.Fatalf("frame % x, want % x", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	r := Request{Slave: 1, Function: 3, Address: 0, Value: 2}
	good := AppendReadResponse(nil, r, []byte{0, 1, 0, 2})
	if data, err := Decode(r, good); err != nil || len(data) != 4 {
		t.Fatalf("good frame: %v", err)
	}
	bad := func(name string, frame []byte, want error) {
		t.Helper()
		if _, err := Decode(r, frame); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	crc := append([]byte(nil), good...)
	crc[3] ^= 1
	bad("bad crc", crc, ErrCRC)
	bad("short", good[:4], ErrLength)
	bad("too few registers", AppendReadResponse(nil, r, []byte{0, 1}), ErrLength)
	bad("wrong address", AppendReadResponse(nil, Request{Slave: 2, Function: 3}, []byte{0, 1, 0, 2}), ErrAddress)
	bad("wrong function", AppendReadResponse(nil, Request{Slave: 1, Function: 4}, []byte{0, 1, 0, 2}), ErrFunction)
	var ex *Exception
	if _, err := Decode(r, AppendException(nil, r, 4)); !errors.As(err, &ex) || ex.Code != 4 || err.Error() != "modbus: exception 4 (slave device failure) to function 0x03" {
		t.Errorf("exception: %v", err)
	}
	w := Request{Slave: 1, Function: 6, Address: 5, Value: 7}
	if _, err := Decode(w, Request{Slave: 1, Function: 6, Address: 5, Value: 8}.Append(nil)); !errors.Is(err, ErrEcho) {
		t.Errorf("bad echo: %v", err)
	}
}
