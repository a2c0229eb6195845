package rtu

import (
	"math"
	"testing"

	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/gateway/modbus"
)

func TestParseFault(t *testing.T) {
	for name, want := range faultNames {
		if k, err := ParseFault(name); err != nil || k != want {
			t.Errorf("ParseFault(%q) = %v, %v", name, k, err)
		}
	}
	if _, err := ParseFault("gremlins"); err == nil {
		t.Error("unknown fault accepted")
	}
}

// TestSlaveExecute checks the register banks without a terminal.
func TestSlaveExecute(t *testing.T) {
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	b := &Bus{slaves: map[byte]*Slave{}}
	s := b.AddSlave(3, maps["CC-10"])
	s.SetPlausible()
	if err := s.Set("slot_temp_c", 4, 41.3); err != nil {
		t.Fatal(err)
	}
	if s.Set("pressure_mpa", 0, 1) == nil {
		t.Error("a charger accepted a pressure")
	}
	resp, _ := s.answer(modbus.Request{Slave: 3, Function: 4, Address: 0x103, Value: 1})
	data, err := modbus.Decode(modbus.Request{Slave: 3, Function: 4, Address: 0x103, Value: 1}, resp)
	if err != nil || data[0] != 0x01 || data[1] != 0x9d { // 413
		t.Errorf("slot 4 temperature register: % x, %v", data, err)
	}
	if q := s.Quantize("slot_temp_c", 4, 41.33); math.Abs(q-41.3) > 1e-9 {
		t.Errorf("Quantize = %v, want 41.3", q)
	}
	// Unmapped start address: exception 2; write to a coil the map names.
	resp, _ = s.answer(modbus.Request{Slave: 3, Function: 3, Address: 0x9000, Value: 1})
	if _, err := modbus.Decode(modbus.Request{Slave: 3, Function: 3, Address: 0x9000, Value: 1}, resp); err == nil {
		t.Error("unmapped address answered")
	}
	w := modbus.Request{Slave: 3, Function: 5, Address: 2, Value: 0xFF00}
	resp, _ = s.answer(w)
	if _, err := modbus.Decode(w, resp); err != nil || !s.Coil(2) || len(s.Writes()) != 1 {
		t.Errorf("write coil: %v, coil %v", err, s.Coil(2))
	}
}
