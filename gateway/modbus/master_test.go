package modbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/gateway/modbus"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// bus starts a simulated bus with an ARCM300 at address 1 and a PT-100 at
// address 2, and a master on the pty through OpenSerial.
func bus(t testing.TB, baud int, cfg modbus.Config) (*rtu.Bus, *modbus.Master) {
	t.Helper()
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	b, err := rtu.NewBus(baud)
	if err != nil {
		testenv.Skip(t, "no pseudo-terminal: %v", err)
	}
	b.AddSlave(1, maps["ARCM300"])
	b.AddSlave(2, maps["PT-100"])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx) }()
	port, err := modbus.OpenSerial(modbus.SerialConfig{Device: b.Path, Baud: baud, ReadTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		// Bounded: a pty without read deadlines would block Serve for
		// ever, and a test must fail rather than hang.
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop within 10 s of its context", "serve")
		}
		port.Close()
		b.Close()
	})
	cfg.Baud = baud
	return b, modbus.NewMaster(port, cfg)
}

func TestMasterReads(t *testing.T) {
	b, m := bus(t, 115200, modbus.Config{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	el := b.Slave(1)
	if err := el.Set("residual_current_ma", 0, 123); err != nil {
		t.Fatal(err)
	}
	if err := el.Set("cable_temp_c", 2, -4.5); err != nil {
		t.Fatal(err)
	}
	el.Set("fault", 0, 1)
	regs, err := m.ReadRegisters(ctx, 1, modbus.FuncReadInputRegisters, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if regs[0] != 123 || int16(regs[2]) != -45 {
		t.Errorf("registers = %v", regs)
	}
	bits, err := m.ReadBits(ctx, 1, modbus.FuncReadDiscreteInputs, 0, 1)
	if err != nil || !bits[0] {
		t.Errorf("discrete input = %v, %v", bits, err)
	}
	// Many slaves on one bus, in turn.
	b.Slave(2).Set("battery_pct", 0, 77)
	for range 3 {
		for _, slave := range []byte{1, 2} {
			if _, err := m.ReadRegisters(ctx, slave, modbus.FuncReadHoldingRegisters+byte(slave%2), 0, 3); err != nil {
				t.Errorf("slave %d: %v", slave, err)
			}
		}
	}
	if err := m.WriteCoil(ctx, 1, 0, true); err != nil {
		t.Fatal(err)
	}
	if !el.Coil(0) {
		t.Error("coil 0 not set by WriteCoil")
	}
	if err := m.WriteRegister(ctx, 2, 3, 1); err != nil {
		t.Fatal(err)
	}
	// An address nobody answers: a timeout, and the bus still works after.
	if _, err := m.ReadRegisters(ctx, 9, modbus.FuncReadHoldingRegisters, 0, 1); !errors.Is(err, modbus.ErrTimeout) {
		t.Errorf("absent slave: %v, want ErrTimeout", err)
	}
	if _, err := m.ReadRegisters(ctx, 1, modbus.FuncReadInputRegisters, 0, 1); err != nil {
		t.Errorf("after a timeout: %v", err)
	}
}

// TestMasterFaults injects each frame fault and checks the error, the
// counter, and that the next request succeeds (nothing wedged).
func TestMasterFaults(t *testing.T) {
	b, m := bus(t, 115200, modbus.Config{Timeout: 150 * time.Millisecond})
	ctx := context.Background()
	el := b.Slave(1)
	cases := []struct {
		name    string
		fault   rtu.Fault
		want    error
		counter func(*modbus.Stats) uint64
	}{
		{"no answer", rtu.Fault{Kind: rtu.FaultNoAnswer}, modbus.ErrTimeout, func(s *modbus.Stats) uint64 { return s.Timeouts.Load() }},
		{"bad crc", rtu.Fault{Kind: rtu.FaultBadCRC}, modbus.ErrCRC, func(s *modbus.Stats) uint64 { return s.CRCErrors.Load() }},
		{"wrong length", rtu.Fault{Kind: rtu.FaultWrongLength}, modbus.ErrLength, func(s *modbus.Stats) uint64 { return s.BadFrames.Load() }},
		{"truncated", rtu.Fault{Kind: rtu.FaultTruncated}, modbus.ErrLength, func(s *modbus.Stats) uint64 { return s.BadFrames.Load() }},
		{"wrong address", rtu.Fault{Kind: rtu.FaultWrongAddress}, modbus.ErrAddress, func(s *modbus.Stats) uint64 { return s.BadFrames.Load() }},
		{"exception", rtu.Fault{Kind: rtu.FaultException, Code: 2}, &modbus.Exception{}, func(s *modbus.Stats) uint64 { return s.Exceptions.Load() }},
		{"busy", rtu.Fault{Kind: rtu.FaultException, Code: 6}, &modbus.Exception{}, func(s *modbus.Stats) uint64 { return s.Exceptions.Load() }},
		{"slow", rtu.Fault{Kind: rtu.FaultSlow, Delay: 400 * time.Millisecond}, modbus.ErrTimeout, func(s *modbus.Stats) uint64 { return s.Timeouts.Load() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, answered := c.counter(m.Stats()), el.Answered()
			el.SetFault(c.fault)
			_, err := m.ReadRegisters(ctx, 1, modbus.FuncReadInputRegisters, 0, 4)
			el.SetFault(rtu.Fault{})
			if c.fault.Kind == rtu.FaultSlow {
				// The device is busy until its late answer is out.
				testenv.WaitFor(t, 5*time.Second, "the late answer", func() bool { return el.Answered() > answered })
			}
			var ex *modbus.Exception
			if _, isEx := c.want.(*modbus.Exception); isEx {
				if !errors.As(err, &ex) || ex.Code != c.fault.Code {
					t.Fatalf("err = %v, want exception %d", err, c.fault.Code)
				}
				t.Logf("exception reads: %v", err)
			} else if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if got := c.counter(m.Stats()); got != before+1 {
				t.Errorf("counter went %d → %d, want +1", before, got)
			}
			// Nothing wedged: the next requests are answered. A 150 ms
			// timeout can pass on a loaded CI machine (-race, every package
			// at once) before the simulated device is scheduled, so one
			// timeout is forgiven; a wedged master fails all three.
			var errs []error
			for range 3 {
				_, err := m.ReadRegisters(ctx, 1, modbus.FuncReadInputRegisters, 0, 4)
				if err == nil {
					break
				}
				if !errors.Is(err, modbus.ErrTimeout) {
					t.Fatalf("the request after the fault failed: %v", err)
				}
				errs = append(errs, err)
			}
			if len(errs) == 3 {
				t.Errorf("the requests after the fault failed: %v", errs)
			} else if len(errs) > 0 {
				t.Logf("the request after the fault timed out %d time(s) before an answer (a loaded machine)", len(errs))
			}
		})
	}
}

// TestMasterRetries: a fault on the first attempt is absorbed by a retry.
func TestMasterRetries(t *testing.T) {
	b, m := bus(t, 115200, modbus.Config{Timeout: 150 * time.Millisecond, Retries: 2})
	b.Slave(1).SetFault(rtu.Fault{Kind: rtu.FaultBadCRC, Count: 2})
	if _, err := m.ReadRegisters(context.Background(), 1, modbus.FuncReadInputRegisters, 0, 2); err != nil {
		t.Fatalf("with 2 retries: %v", err)
	}
	if got := m.Stats().Retries.Load(); got != 2 {
		t.Errorf("retries = %d, want 2", got)
	}
}

// BenchmarkPoll measures polls per second on one bus against the
// simulator, which emulates the line's speed: one poll is a read of the
// ARCM300's 19 input registers and its fault input.
func BenchmarkPoll(b *testing.B) {
	for _, baud := range []int{9600, 115200} {
		b.Run(map[int]string{9600: "9600", 115200: "115200"}[baud], func(b *testing.B) {
			_, m := bus(b, baud, modbus.Config{Timeout: time.Second})
			ctx := context.Background()
			start := time.Now()
			for b.Loop() {
				if _, err := m.ReadRegisters(ctx, 1, modbus.FuncReadInputRegisters, 0, 19); err != nil {
					b.Fatal(err)
				}
				if _, err := m.ReadBits(ctx, 1, modbus.FuncReadDiscreteInputs, 0, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "polls/s")
		})
	}
}
