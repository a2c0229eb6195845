package alarms

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

// TransitionDeliveryFault names the notice that a push was parked: a
// fault (故障) about the delivery channel itself. Its key is
// "<alarm_id>-delivery_fault-<n>", n the parked push's outbox row.
const TransitionDeliveryFault = "delivery_fault"

// park marks row parked and, unless it is itself a delivery-fault notice,
// queues the notice (a fault, routed like one: the same receiver, which
// may take a small body where it refused a large one, and the robots of the
// alarm's grid; the brigade too for a fire). A parked raised push of an
// unanswered fire or alarm to its station escalates the alarm at once, if it
// was not escalated yet, so that the next station up (or the brigade) is
// asked without waiting for respond_within.
func (m *Manager) park(ctx context.Context, row *outboxRow, at time.Time, reason string) ([]effect, error) {
	tx, err := m.store.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("park push %d: %w", row.id, err)
	}
	defer tx.rollback()
	ok, err := tx.parkPush(ctx, row.id, at, reason)
	if err != nil {
		return nil, fmt.Errorf("park push %d: %w", row.id, err)
	}
	if !ok || row.transition == TransitionDeliveryFault {
		return nil, tx.commit()
	}
	a, err := tx.alarm(ctx, row.alarmID)
	if err != nil {
		return nil, fmt.Errorf("park push %d: read alarm %s: %w", row.id, formatID(row.alarmID), err)
	}
	p := m.alarmPush(&a)
	p.Transition = TransitionDeliveryFault
	p.IdempotencyKey = a.ID + "-" + TransitionDeliveryFault + "-" + strconv.FormatInt(row.id, 10)
	p.Severity, p.SeverityZH = rules.SeverityFault.String(), rules.SeverityFault.ZH()
	p.Message = "【故障·推送被拒】推送 " + row.key + " 被接收方拒绝且无法重试（" + storableText(reason, 200) +
		"），已停止重试，后续推送照常发送。请核查接收平台；报警 " + a.ID + " 详情见值班台。"
	endpoint, err := tx.pushEndpoint(ctx, row.id)
	if err != nil {
		return nil, err
	}
	var rs []pushTarget
	if row.target == "station" || row.target == "brigade" || strings.HasPrefix(row.target, "station:") {
		rs = append(rs, pushTarget{row.target, a.Station, endpoint})
	}
	if ep := m.cfg.BrigadeEndpoint; ep != "" && a.Severity == rules.SeverityFire.String() && ep != endpoint {
		rs = append(rs, pushTarget{"brigade", "", ep})
	}
	eps, err := m.queuePush(ctx, tx, row.alarmID, a.Grid, &p, rs, at)
	if err != nil {
		return nil, err
	}
	if err := tx.commit(); err != nil {
		return nil, fmt.Errorf("park push %d: %w", row.id, err)
	}
	effs := []effect{{alarm: a, transition: TransitionDeliveryFault, endpoints: eps}}
	if row.target == "station" && row.transition == TransitionRaised && slices.Contains(unanswered, a.State) &&
		(a.Severity == rules.SeverityFire.String() || a.Severity == rules.SeverityAlarm.String()) && a.Escalations == 0 {
		// Only if no escalation asked the next level yet: escalations stay
		// spaced by respond_within.
		eff, err := m.escalate(ctx, row.alarmID, a.Escalations, at)
		if err != nil {
			m.log.Error("escalation after a parked push failed; the escalation check retries", "alarm", a.ID, "err", err)
		} else if eff != nil {
			effs = append(effs, *eff)
		}
	}
	return effs, nil
}
