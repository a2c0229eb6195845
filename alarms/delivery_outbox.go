package alarms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// outbox delivers stored pushes: one worker per endpoint, so that a slow or
// dead station delays only its own pushes, which it gets in order of
// creation (a "cleared" never overtakes its "raised").
type outbox struct {
	m   *Manager
	ctx context.Context

	mu      sync.Mutex
	workers map[string]chan struct{} // endpoint → wake-up signal
	wg      sync.WaitGroup
}

func newOutbox(m *Manager, ctx context.Context) *outbox {
	return &outbox{m: m, ctx: ctx, workers: map[string]chan struct{}{}}
}

// wake tells the worker of endpoint that a push is waiting, starting the
// worker if there is none yet.
func (o *outbox) wake(endpoint string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx.Err() != nil {
		return // shutting down: the push waits in the store for the next Run
	}
	ch, ok := o.workers[endpoint]
	if !ok {
		ch = make(chan struct{}, 1)
		o.workers[endpoint] = ch
		o.wg.Go(func() { o.run(endpoint, ch) })
	}
	select {
	case ch <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// wait waits for the workers, which stop when the Run context is done.
func (o *outbox) wait() { o.wg.Wait() }

// run delivers the pushes of one endpoint, oldest first, retrying each until
// it succeeds.
func (o *outbox) run(endpoint string, wake <-chan struct{}) {
	m := o.m
	failures := 0
	for {
		row, busy, err := m.nextPush(o.ctx, endpoint)
		if o.ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			m.log.Error("outbox read failed", "endpoint", redact(endpoint), "err", err)
			if !o.sleep(m.storeBackoff(failures)) {
				return
			}
			continue
		}
		if row == nil && busy > 0 {
			// Another instance on the shared store holds the oldest push
			// (shared.go): look again when its lease lapses, or sooner.
			t := time.NewTimer(busy)
			select {
			case <-wake:
			case <-t.C:
			case <-o.ctx.Done():
				t.Stop()
				return
			}
			t.Stop()
			continue
		}
		if row == nil {
			failures = 0
			select {
			case <-wake:
				continue
			case <-o.ctx.Done():
				return
			}
		}
		start := time.Now()
		status, err := o.deliver(endpoint, row)
		if o.ctx.Err() != nil {
			// Cancelled mid-attempt: we cannot tell whether it arrived. The
			// next Run sends it again under the same idempotency key.
			return
		}
		m.met.pushSeconds.Observe(time.Since(start).Seconds())
		now := m.now()
		if err == nil {
			m.met.pushes.WithLabelValues("sent").Inc()
			failures = 0
			if !o.markDelivered(row, now) {
				return
			}
			m.met.pending.Dec()
			m.log.Info("push delivered", "alarm", formatID(row.alarmID), "key", row.key, "target", row.target,
				"attempts", row.attempts+1, "status", status)
			continue
		}
		if permanent(status, err) {
			// A poison push (a body the receiver will never take) must not
			// hold back the pushes behind it, fires included: set it aside
			// with an alert and go on.
			m.met.pushes.WithLabelValues("parked").Inc()
			if !o.park(row, now, status, err) {
				return
			}
			m.met.pending.Dec()
			failures = 0
			continue
		}
		m.met.pushes.WithLabelValues("failed").Inc()
		failures++
		if merr := m.store.markFailed(context.WithoutCancel(o.ctx), row.id, now, err.Error()); merr != nil {
			m.log.Error("outbox update failed", "alarm", formatID(row.alarmID), "err", merr)
		}
		wait := backoff(m.cfg.RetryMin, m.cfg.RetryMax, failures)
		m.holdFailed(context.WithoutCancel(o.ctx), row, wait)
		// Log the first failures and then every tenth, so a dead endpoint
		// does not flood the log.
		if failures <= 3 || failures%10 == 0 {
			m.log.Warn("push failed, will retry", "alarm", formatID(row.alarmID), "key", row.key,
				"target", row.target, "endpoint", redact(endpoint), "attempts", row.attempts+1, "retry_in", wait, "err", err)
		}
		if !o.sleep(wait) {
			return
		}
	}
}

// markDelivered records a delivery, retrying while the store fails; it
// returns false if the Run context ended first (the push will then be sent
// again by the next Run, under the same idempotency key).
func (o *outbox) markDelivered(row *outboxRow, at time.Time) bool {
	for failures := 1; ; failures++ {
		pushed, err := o.m.store.markDelivered(context.WithoutCancel(o.ctx), row, at)
		if err == nil {
			if pushed {
				o.m.notePushed(row.alarmID)
			}
			return true
		}
		o.m.log.Error("outbox update failed", "alarm", formatID(row.alarmID), "err", err)
		if !o.sleep(o.m.storeBackoff(failures)) {
			return false
		}
	}
}

// sleep waits d or until the Run context is done; it reports whether the
// worker should go on.
func (o *outbox) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-o.ctx.Done():
		return false
	}
}

// deliver makes one attempt: POST the stored body, freshly signed.
func (o *outbox) deliver(endpoint string, row *outboxRow) (int, error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.m.cfg.PushTimeout)
	defer cancel()
	return o.m.post(ctx, endpoint, strings.HasPrefix(row.target, "robot:"), row.key, o.m.withResponderLink(ctx, row)) // issue 16
}

// post makes one signed POST of body to endpoint (a group robot's, with
// its signature added to the URL, when robot is set) and checks the
// answer.
func (m *Manager) post(ctx context.Context, endpoint string, robot bool, key string, body []byte) (int, error) {
	u := endpoint
	if robot {
		u = m.robotURL(endpoint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "firewatch-alarms/"+PushVersion)
	req.Header.Set(HeaderIdempotencyKey, key)
	if !robot { // robots get their own signature (robotURL), not the dispatch one
		req.Header.Set(HeaderTimestamp, ts)
		m.sign(req.Header, endpoint, ts, body)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		// The error names the URL, which may carry a robot's key or a
		// token: it is logged and shown in last_error, so redact it.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact(endpoint)
		}
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	// Read a little of the answer: to reuse the connection, and to show the
	// receiver's complaint in last_error.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := strings.ToValidUTF8(strings.TrimSpace(string(snippet)), "")
		return resp.StatusCode, fmt.Errorf("status %s: %s", resp.Status, msg)
	}
	if robot {
		if err := robotAnswer(snippet); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// redact drops the query, fragment and credentials of an endpoint URL
// before it is logged: webhook URLs often carry an access token.
func redact(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// permanent reports whether a failed attempt can never succeed by
// retrying the same body: a 4xx other than 408 (timeout) and 429 (rate
// limit), or a robot's permanent errcode. Everything else (5xx, a refused
// connection, a timeout) is the receiver being down and is retried.
func permanent(status int, err error) bool {
	if status >= 400 && status < 500 {
		return status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
	}
	var re *robotError
	if errors.As(err, &re) {
		return !re.transient()
	}
	return false
}

// park sets a poison push aside, retrying while the store fails; it
// returns false if the Run context ended first.
func (o *outbox) park(row *outboxRow, at time.Time, status int, cause error) bool {
	m := o.m
	m.log.Error("push refused for good: parked, later pushes go on", "alarm", formatID(row.alarmID), "key", row.key,
		"target", row.target, "status", status, "err", cause)
	for failures := 1; ; failures++ {
		effs, err := m.park(context.WithoutCancel(o.ctx), row, at, cause.Error())
		if err == nil {
			m.after(effs)
			return true
		}
		m.log.Error("outbox update failed", "alarm", formatID(row.alarmID), "err", err)
		if !o.sleep(m.storeBackoff(failures)) {
			return false
		}
	}
}
