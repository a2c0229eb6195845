package modbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway/modbus"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// lateAnswer makes slave s answer one request 400 ms late, past the
// master's 150 ms timeout, and waits until that late frame is on the line.
func lateAnswer(t *testing.T, m *modbus.Master, s *rtu.Slave, slave, function byte) {
	t.Helper()
	s.SetFault(rtu.Fault{Kind: rtu.FaultSlow, Delay: 400 * time.Millisecond, Count: 1})
	before := s.Answered()
	if _, err := m.ReadRegisters(context.Background(), slave, function, 0, 3); !errors.Is(err, modbus.ErrTimeout) {
		t.Fatalf("slow answer: %v, want ErrTimeout", err)
	}
	testenv.WaitFor(t, 5*time.Second, "the late answer on the line", func() bool { return s.Answered() > before })
}

// TestStaleFrameNotTakenAsAnswer: a late answer left on the line is not
// taken as the answer to the next request of the same kind (finding 1 of
// issue 24: the device reported one-interval-old data and never timed out).
func TestStaleFrameNotTakenAsAnswer(t *testing.T) {
	b, m := bus(t, 115200, modbus.Config{Timeout: 150 * time.Millisecond})
	el := b.Slave(1)
	el.Set("residual_current_ma", 0, 100)
	lateAnswer(t, m, el, 1, modbus.FuncReadInputRegisters)
	el.Set("residual_current_ma", 0, 200)
	regs, err := m.ReadRegisters(context.Background(), 1, modbus.FuncReadInputRegisters, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if regs[0] != 200 {
		t.Fatalf("read %d: the stale answer (100) was taken for the new one (200)", regs[0])
	}
	if got := m.Stats().Stale.Load(); got == 0 {
		t.Error("the discarded stale frame was not counted")
	}
}

// TestSlowDeviceTimesOut: a device that always answers after the timeout
// times out every time (and so goes offline) instead of each request
// taking the previous request's late answer.
func TestSlowDeviceTimesOut(t *testing.T) {
	b, m := bus(t, 115200, modbus.Config{Timeout: 150 * time.Millisecond})
	el := b.Slave(1)
	el.SetFault(rtu.Fault{Kind: rtu.FaultSlow, Delay: 400 * time.Millisecond})
	for i := range 4 {
		before := el.Answered()
		_, err := m.ReadRegisters(context.Background(), 1, modbus.FuncReadInputRegisters, 0, 3)
		if !errors.Is(err, modbus.ErrTimeout) {
			t.Fatalf("request %d of a device slower than the timeout: %v, want ErrTimeout", i, err)
		}
		testenv.WaitFor(t, 5*time.Second, "the late answer", func() bool { return el.Answered() > before })
	}
}

// TestStaleFrameDoesNotFailWrite: a neighbour's late answer does not make
// the next coil write fail with "wrong slave address" while the coil was
// set (finding 2 of issue 24).
func TestStaleFrameDoesNotFailWrite(t *testing.T) {
	b, m := bus(t, 115200, modbus.Config{Timeout: 150 * time.Millisecond})
	lateAnswer(t, m, b.Slave(2), 2, modbus.FuncReadHoldingRegisters)
	if err := m.WriteCoil(context.Background(), 1, 0, true); err != nil {
		t.Fatalf("write after a neighbour's late answer: %v (coil set: %v)", err, b.Slave(1).Coil(0))
	}
}

// TestEchoDetected: an adapter that echoes what the master sends, with no
// device on the bus, must not make a coil write look answered (finding 4
// of issue 24), and with a device behind it the echo is skipped.
func TestEchoDetected(t *testing.T) {
	b, m := bus(t, 115200, modbus.Config{Timeout: 150 * time.Millisecond})
	b.SetEcho(true)
	ctx := context.Background()
	// A poll shows the echo (a read's answer cannot look like its request);
	// from then on a write's echo is not taken for the slave's answer.
	if _, err := m.ReadRegisters(ctx, 9, modbus.FuncReadHoldingRegisters, 0, 1); !errors.Is(err, modbus.ErrTimeout) {
		t.Fatalf("read of an absent slave through an echo: %v, want ErrTimeout", err)
	}
	if err := m.WriteCoil(ctx, 9, 0, true); err == nil {
		t.Fatal("a coil write to an absent slave succeeded on an echoing adapter")
	}
	if m.Stats().Echoes.Load() == 0 {
		t.Error("echo not counted")
	}
	// With a device behind the echoing adapter, reads and writes work.
	b.Slave(1).Set("residual_current_ma", 0, 42)
	regs, err := m.ReadRegisters(ctx, 1, modbus.FuncReadInputRegisters, 0, 1)
	if err != nil || regs[0] != 42 {
		t.Fatalf("read through the echo: %v, %v", regs, err)
	}
	if err := m.WriteCoil(ctx, 1, 0, true); err != nil || !b.Slave(1).Coil(0) {
		t.Fatalf("write through the echo: %v, coil %v", err, b.Slave(1).Coil(0))
	}
}
