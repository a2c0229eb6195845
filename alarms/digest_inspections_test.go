package alarms

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDigestInspections: with a provider of 查岗 figures (the GB/T 26875.3 endpoint in firewatch), the
// digest names each networked unit's answer rate and median answer time, the worst first, and says which
// were not asked; the provider gets the digest's grid and period.
func TestDigestInspections(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	cfg := testConfig(t)
	from := time.Date(2026, 11, 30, 0, 0, 0, 0, cst)
	to := from.AddDate(0, 0, 1)
	var gotGrid string
	var gotFrom, gotTo time.Time
	secs := func(s float64) *float64 { return &s }
	cfg.Inspections = func(grid string, f, t time.Time) []InspectionFigure {
		gotGrid, gotFrom, gotTo = grid, f, t
		return []InspectionFigure{
			{UITD: "uitd-1", Unit: "柳石家园物业", Asked: 4, Answered: 4, MedianAnswerSeconds: secs(42)},
			{UITD: "uitd-2", Address: "某厂 消防控制室", Asked: 0},
			{UITD: "uitd-3", Unit: "某商场", Asked: 4, Answered: 1, Unanswered: 2, Offline: 1, MedianAnswerSeconds: secs(330), Partial: true},
		}
	}
	m := start(t, cfg, l)
	d, err := m.Digest(context.Background(), "450204001", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if gotGrid != "450204001" || !gotFrom.Equal(from) || !gotTo.Equal(to) {
		t.Errorf("provider asked for %q %v–%v", gotGrid, gotFrom, gotTo)
	}
	text := d.Text()
	t.Logf("digest:\n%s", text)
	want := "\n**查岗考核**（联网单位消防控制室）：3 家，查岗 8 次，应答 5 次，应答率 62%\n" +
		"- 某商场（uitd-3）：查岗 4 次，应答 1 次，应答率 25%，应答中位 330 秒（超时未应答 2 次、装置离线 1 次）（记录不全）\n" +
		"- 柳石家园物业（uitd-1）：查岗 4 次，应答 4 次，应答率 100%，应答中位 42 秒\n" +
		"- 某厂 消防控制室（uitd-2）：本期未查岗\n"
	if !strings.HasSuffix(text, want) {
		t.Errorf("digest text ends\n%s\nwant\n%s", text[max(0, len(text)-len(want)-40):], want)
	}
	if d.InspectionUnits != 3 || d.InspectionsAsked != 8 || d.InspectionsAnswered != 5 || d.Inspections[0].UITD != "uitd-3" {
		t.Errorf("digest figures %+v", d)
	}

	// Without UITDs in the grid (or without the endpoint), no section.
	cfg2 := testConfig(t)
	cfg2.Inspections = func(string, time.Time, time.Time) []InspectionFigure { return nil }
	m2 := start(t, cfg2, l)
	d2, err := m2.Digest(context.Background(), "450204001", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d2.Text(), "查岗") {
		t.Errorf("a digest without UITDs speaks of 查岗:\n%s", d2.Text())
	}
}
