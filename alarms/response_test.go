package alarms

import (
	"testing"
	"time"
)

func TestResponse(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 18, 0, 0, 0, cst)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	a := &Alarm{DeviceTime: at(-2), RaisedAt: t0, History: []Change{
		{To: StateRaised, At: t0},
		{From: StateRaised, To: StatePushed, At: at(1)},
		{From: StatePushed, To: StatePushed, At: at(60), Actor: ActorSystem, Note: "escalated"},
		{From: StatePushed, To: StateAcknowledged, At: at(75)},
		{From: StateAcknowledged, To: StateDispatched, At: at(80)},
		{From: StateDispatched, To: StateArrived, At: at(170)},
		{From: StateArrived, To: StateResolved, At: at(900)},
	}}
	r := response(a)
	if r.DeviceToRaised != 2 || *r.Pushed != 1 || *r.Received != 75 || *r.Acknowledged != 75 || *r.Dispatched != 80 ||
		*r.Arrived != 170 || *r.Closed != 900 || *r.RespondedInTime || !*r.ArrivedInTime {
		t.Errorf("response %+v", r)
	}
	open := response(&Alarm{RaisedAt: t0, DeviceTime: t0, History: []Change{{To: StateRaised, At: t0}}})
	if open.Pushed != nil || open.RespondedInTime != nil || open.Closed != nil {
		t.Errorf("open alarm response %+v", open)
	}
}

func TestQuantiles(t *testing.T) {
	q := quantiles([]float64{9, 1, 5, 3, 7, 2, 8, 4, 6, 10})
	if q.N != 10 || *q.Median != 6 || *q.P90 != 9 {
		t.Errorf("quantiles %d %v %v", q.N, *q.Median, *q.P90)
	}
	if q := quantiles(nil); q.N != 0 || q.Median != nil {
		t.Errorf("empty quantiles %+v", q)
	}
	if s := share([]float64{30, 59, 61, 120}, RespondTarget); s != 0.5 {
		t.Errorf("share %v", s)
	}
}
