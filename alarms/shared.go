package alarms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"
)

// Several firewatch instances on one PostgreSQL store (issue 15): each push
// is delivered by the instance holding its lease (store_lease.go), which
// lapses when the instance dies so that another takes the push over under
// the same idempotency key; the periodic duties (escalations, incident
// pushes, clearing stable flapping alarms, digests) run on the one instance
// holding the duty lease. With SQLite there is one instance, which always
// leads.

// dutyPeriodic is the name of the duty lease of the periodic checks.
const dutyPeriodic = "periodic"

// DefaultLeaseMargin is how much longer than PushTimeout a lease lasts by
// default: the takeover time of a dead instance's push or duties.
const DefaultLeaseMargin = 5 * time.Second

// storeRetryMax bounds the wait between retries of a failing store
// (PostgreSQL restarting): alarms waiting for it are stored within this of
// its return, whatever RetryMax allows a failing receiver.
const storeRetryMax = 2 * time.Second

// storeBackoff is the wait after failures consecutive failures of the
// store.
func (m *Manager) storeBackoff(failures int) time.Duration {
	return backoff(m.cfg.RetryMin, min(m.cfg.RetryMax, max(storeRetryMax, m.cfg.RetryMin)), failures)
}

// newInstanceID names this process in the leases: host, pid and a random
// part (a restarted process is a new owner).
func newInstanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// leading reports whether this instance runs the periodic duties now.
func (m *Manager) leading() bool {
	if !m.store.pg {
		return true
	}
	m.leadMu.Lock()
	defer m.leadMu.Unlock()
	return time.Now().Before(m.leadUntil)
}

// leaseLoop (PostgreSQL) takes or renews the duty lease every third of
// the lease and wakes the outbox workers of every endpoint with pending
// pushes, so that pushes a dead instance held are taken over once their
// lease lapses. At a clean stop it gives its leases up.
func (m *Manager) leaseLoop(ctx context.Context, ob *outbox) {
	every := m.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		m.renewDuty(ctx)
		if eps, pending, err := m.store.pendingEndpoints(ctx); err == nil {
			for _, ep := range eps {
				ob.wake(ep)
			}
			// The instances deliver each other's pushes: the gauge counts
			// the store's, not what this one queued minus what it sent.
			m.met.pending.Set(float64(pending))
		}
		select {
		case <-ctx.Done():
			m.releaseLeases()
			return
		case <-t.C:
		}
	}
}

// renewDuty takes or renews the duty lease. The lease is counted as held
// from before the request was sent, so that this instance stops leading no
// later than the others may take over.
func (m *Manager) renewDuty(ctx context.Context) {
	start := time.Now()
	held, err := m.store.takeDuty(ctx, dutyPeriodic, m.instance, m.cfg.Lease)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("duty lease not renewed", "err", err)
		}
		return
	}
	m.leadMu.Lock()
	was := time.Now().Before(m.leadUntil)
	if held {
		m.leadUntil = start.Add(m.cfg.Lease)
	} else {
		m.leadUntil = time.Time{}
	}
	m.leadMu.Unlock()
	if held != was {
		m.log.Info("periodic duties", "instance", m.instance, "leading", held)
	}
}

// releaseLeases gives up the duty and the pushes this instance holds, so
// that another instance takes them at once rather than after the lease.
func (m *Manager) releaseLeases() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m.leadMu.Lock()
	m.leadUntil = time.Time{}
	m.leadMu.Unlock()
	if err := m.store.releaseDuty(ctx, dutyPeriodic, m.instance); err != nil {
		m.log.Warn("duty lease not released", "err", err)
	}
	if err := m.store.releasePushes(ctx, m.instance); err != nil {
		m.log.Warn("push leases not released", "err", err)
	}
}

// nextPush returns the next push of endpoint this instance is to deliver,
// or, on PostgreSQL, none and how long another instance still holds it.
func (m *Manager) nextPush(ctx context.Context, endpoint string) (*outboxRow, time.Duration, error) {
	if !m.store.pg {
		row, err := m.store.nextPending(ctx, endpoint)
		return row, 0, err
	}
	return m.store.claimPending(ctx, endpoint, m.instance, m.cfg.Lease)
}

// holdFailed keeps a failed push leased while this instance waits wait to
// retry it.
func (m *Manager) holdFailed(ctx context.Context, row *outboxRow, wait time.Duration) {
	if !m.store.pg {
		return
	}
	if err := m.store.holdPush(ctx, row.id, m.instance, wait+m.cfg.Lease); err != nil {
		m.log.Warn("push lease not extended", "alarm", formatID(row.alarmID), "err", err)
	}
}
