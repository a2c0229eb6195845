package alarms

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Flapping defaults: a device that raises the same rule FlapCount times
// within FlapWindow is flapping (抖动); its alarm then stays open, counting
// repeats without pushing, until the condition has stayed clear for
// FlapStable.
const (
	DefaultFlapCount  = 3
	DefaultFlapWindow = 10 * time.Minute
	DefaultFlapStable = 5 * time.Minute
)

// flapping reports whether a new alarm for (device, rule, channel) raised
// at now is one too many within FlapWindow.
func (m *Manager) flapping(ctx context.Context, tx *storeTx, device, rule string, ch int, now time.Time) (bool, error) {
	if m.cfg.FlapCount <= 1 {
		return false, nil
	}
	n, err := tx.countRaisedSince(ctx, device, rule, ch, now.Add(-m.cfg.FlapWindow))
	if err != nil {
		return false, fmt.Errorf("count recent alarms of device %s rule %s: %w", device, rule, err)
	}
	return n+1 >= m.cfg.FlapCount, nil
}

// flapNote is appended to the message of a flapping alarm's raised push.
func (m *Manager) flapNote() string {
	return "该设备 " + zhDuration(m.cfg.FlapWindow) + "内第 " + strconv.Itoa(m.cfg.FlapCount) +
		" 次以上报警，已标记为抖动：恢复稳定 " + zhDuration(m.cfg.FlapStable) + "前不再单独推送。"
}

// clearStable auto-clears flapping alarms whose condition ended FlapStable
// ago (firewatch's time of the clear, not of the last raise: a condition
// that lasted long is not stable the moment it ends) and was not raised
// again, nobody having taken them on, and tells every receiver told of them.
func (m *Manager) clearStable(ctx context.Context, now time.Time) error {
	ids, err := m.store.read.stableFlapping(ctx, now.Add(-m.cfg.FlapStable))
	if err != nil {
		return fmt.Errorf("find stable flapping alarms: %w", err)
	}
	return actOnEach(m, ids, func(id int64) (*effect, error) { return m.clearFlapping(ctx, id, now) })
}

func (m *Manager) clearFlapping(ctx context.Context, id int64, now time.Time) (*effect, error) {
	tx, err := m.store.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.rollback()
	a, err := tx.alarm(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read alarm %s: %w", formatID(id), err)
	}
	if a.ConditionEndedAt == nil || CheckTransition(a.State, StateAutoCleared, a.Severity) != nil {
		return nil, nil // raised again or taken on meanwhile
	}
	// The conditions of clearStable again, in the UPDATE: on PostgreSQL
	// the rule may have raised the alarm again since the read above, and an
	// UPDATE re-reads the row it waited for.
	ok, err := tx.clearIfStable(ctx, id, now, now.Add(-m.cfg.FlapStable))
	if err != nil {
		return nil, fmt.Errorf("clear alarm %s: %w", a.ID, err)
	}
	if !ok {
		return nil, nil
	}
	note := "flapping stopped: condition clear for " + m.cfg.FlapStable.String()
	if err := tx.move(ctx, id, a.State, StateAutoCleared, now, ActorSystem, note); err != nil {
		return nil, err
	}
	cleared := msTime(now.UnixMilli())
	a.State, a.Open, a.ClearedAt, a.ClosedAt = StateAutoCleared, false, &cleared, &cleared
	eps, err := m.enqueueFromRaised(ctx, tx, id, &a, now, func(p *Push) {
		p.Transition = TransitionCleared
		p.IdempotencyKey = a.ID + "-" + TransitionCleared
		p.ClearedAt = formatTime(now)
		p.Message = "【" + p.SeverityZH + "已恢复】" + p.Device.ID + " " + p.MetricZH + " 抖动已停止，已稳定 " +
			zhDuration(m.cfg.FlapStable) + "。原报警 " + a.ID + "，报警时间 " + a.DeviceTime.In(cst).Format(zhTimeLayout) +
			"，期间重复 " + strconv.Itoa(a.Repeats) + " 次。"
	})
	if err != nil {
		return nil, err
	}
	if err := tx.commit(); err != nil {
		return nil, err
	}
	m.log.Info("flapping alarm cleared after a stable period", "alarm", a.ID, "device", a.Device, "repeats", a.Repeats)
	return &effect{alarm: a, transition: TransitionCleared, endpoints: eps}, nil
}
