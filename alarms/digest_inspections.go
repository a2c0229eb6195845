package alarms

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// InspectionFigure is the 考核 figure of one networked unit's fire control room over a digest's period:
// the 查岗 (GB/T 26875.3 type 91) its UITD was asked in the period and how they ended. The GB/T 26875.3
// endpoint gives them (Config.Inspections; the alarms package does not know where they come from).
type InspectionFigure struct {
	UITD    string `json:"uitd"`
	Address string `json:"address"` // the UITD's device's address: the building's fire control room
	Unit    string `json:"unit,omitempty"`
	// Asked counts the period's ended 查岗; Answered those answered in time; Unanswered, Undelivered (the UITD
	// did not take it) and Offline (not connected) the others.
	Asked       int `json:"asked"`
	Answered    int `json:"answered"`
	Unanswered  int `json:"unanswered"`
	Undelivered int `json:"undelivered"`
	Offline     int `json:"offline"`
	// MedianAnswerSeconds is the median answer time of those answered (nil: none).
	MedianAnswerSeconds *float64 `json:"median_answer_seconds"`
	// Partial: the figure may miss 查岗 of the period's start (the endpoint remembers a bounded number, and
	// none across a restart).
	Partial bool `json:"partial,omitempty"`
}

// rate is the answer rate, and false when nothing was asked.
func (f *InspectionFigure) rate() (float64, bool) {
	if f.Asked == 0 {
		return 0, false
	}
	return float64(f.Answered) / float64(f.Asked), true
}

// inspections fills the digest's 考核 figures of grid over [from, to) from the provider, if any: the units
// with the lowest answer rate first, those not asked last.
func (m *Manager) inspections(d *Digest, grid string, from, to time.Time) {
	if m.cfg.Inspections == nil {
		return
	}
	figs := m.cfg.Inspections(grid, from, to)
	if len(figs) == 0 {
		return
	}
	sort.SliceStable(figs, func(i, j int) bool {
		ri, oki := figs[i].rate()
		rj, okj := figs[j].rate()
		if oki != okj {
			return oki
		}
		return ri < rj
	})
	d.InspectionUnits = len(figs)
	for i := range figs {
		d.InspectionsAsked += figs[i].Asked
		d.InspectionsAnswered += figs[i].Answered
	}
	d.Inspections = figs[:min(len(figs), digestList)]
}

// writeInspections writes the 查岗考核 section of the digest text, when the digest has UITDs.
func (d *Digest) writeInspections(b *strings.Builder) {
	if d.InspectionUnits == 0 {
		return
	}
	fmt.Fprintf(b, "\n**查岗考核**（联网单位消防控制室）：%d 家，查岗 %d 次，应答 %d 次", d.InspectionUnits, d.InspectionsAsked, d.InspectionsAnswered)
	if d.InspectionsAsked > 0 {
		fmt.Fprintf(b, "，应答率 %.0f%%", 100*float64(d.InspectionsAnswered)/float64(d.InspectionsAsked))
	}
	b.WriteString("\n")
	for i := range d.Inspections {
		f := &d.Inspections[i]
		name := f.Unit
		if name == "" {
			name = f.Address
		}
		fmt.Fprintf(b, "- %s（%s）：", name, f.UITD)
		r, ok := f.rate()
		if !ok {
			b.WriteString("本期未查岗\n")
			continue
		}
		fmt.Fprintf(b, "查岗 %d 次，应答 %d 次，应答率 %.0f%%", f.Asked, f.Answered, 100*r)
		if f.MedianAnswerSeconds != nil {
			fmt.Fprintf(b, "，应答中位 %s", zhSeconds(*f.MedianAnswerSeconds))
		}
		var miss []string
		for _, c := range []struct {
			n    int
			what string
		}{{f.Unanswered, "超时未应答"}, {f.Undelivered, "装置未接收"}, {f.Offline, "装置离线"}} {
			if c.n > 0 {
				miss = append(miss, fmt.Sprintf("%s %d 次", c.what, c.n))
			}
		}
		if len(miss) > 0 {
			b.WriteString("（" + strings.Join(miss, "、") + "）")
		}
		if f.Partial {
			b.WriteString("（记录不全）")
		}
		b.WriteString("\n")
	}
	if more := d.InspectionUnits - len(d.Inspections); more > 0 {
		fmt.Fprintf(b, "- 另有 %d 家，见平台\n", more)
	}
}
