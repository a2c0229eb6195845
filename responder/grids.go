package responder

import (
	"sort"

	"github.com/firewatch-iot/firewatch/devices"
)

// mapGrid is one grid (a village, or the grid code a device has) as the
// console's offline map outlines it and colours it by 三色预警.
type mapGrid struct {
	Grid string `json:"grid"`
	Name string `json:"name"` // the ledger's place name of the grid, if any
	// Devices counts the grid's devices in the ledger, with or without
	// coordinates: the denominator of the offline ratio.
	Devices int `json:"devices"`
	// Outline is the convex hull of the grid's located devices, as
	// [lat, lon] pairs counter-clockwise: the ledger has points, not
	// boundaries. Fewer than 3 pairs when the devices are fewer or on one
	// line; the console then draws a ring around them.
	Outline [][2]float64 `json:"outline"`
}

// grids outlines every grid of the ledger's devices, in grid order.
func grids(l *devices.Ledger) []mapGrid {
	by := map[string]*mapGrid{}
	pts := map[string][][2]float64{}
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.Removed {
			continue
		}
		g := string(d.Grid)
		mg := by[g]
		if mg == nil {
			mg = &mapGrid{Grid: g, Name: l.Places[g]} // "": the console shows the code
			by[g] = mg
		}
		mg.Devices++
		if d.Lat != 0 || d.Lon != 0 {
			pts[g] = append(pts[g], [2]float64{d.Lat, d.Lon})
		}
	}
	out := make([]mapGrid, 0, len(by))
	for g, mg := range by {
		mg.Outline = hull(pts[g])
		out = append(out, *mg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Grid < out[j].Grid })
	return out
}

// hull is the convex hull of ps ([lat, lon]) by Andrew's monotone chain,
// counter-clockwise in (lon, lat), without repeated or collinear points.
// Lat and lon are treated as plane coordinates: a village spans a few
// kilometres, where the error is far below what a map shows.
func hull(ps [][2]float64) [][2]float64 {
	p := make([][2]float64, len(ps))
	copy(p, ps)
	sort.Slice(p, func(i, j int) bool {
		if p[i][1] != p[j][1] {
			return p[i][1] < p[j][1]
		}
		return p[i][0] < p[j][0]
	})
	// Drop duplicates (devices at one address).
	u := p[:0]
	for i, q := range p {
		if i == 0 || q != p[i-1] {
			u = append(u, q)
		}
	}
	p = u
	if len(p) < 3 {
		return p
	}
	// cross of (a→b)×(a→c) with x = lon, y = lat.
	cross := func(a, b, c [2]float64) float64 {
		return (b[1]-a[1])*(c[0]-a[0]) - (b[0]-a[0])*(c[1]-a[1])
	}
	// Below eps (in squared degrees, about 1 mm × 1 km) three points are
	// on one line: rounding must not keep a middle point.
	const eps = 1e-12
	h := make([][2]float64, 0, 2*len(p))
	for _, q := range p { // lower
		for len(h) >= 2 && cross(h[len(h)-2], h[len(h)-1], q) <= eps {
			h = h[:len(h)-1]
		}
		h = append(h, q)
	}
	lower := len(h) + 1
	for i := len(p) - 2; i >= 0; i-- { // upper
		q := p[i]
		for len(h) >= lower && cross(h[len(h)-2], h[len(h)-1], q) <= eps {
			h = h[:len(h)-1]
		}
		h = append(h, q)
	}
	h = h[:len(h)-1] // the first point again
	if len(h) < 3 {  // all on one line: its two ends
		return [][2]float64{p[0], p[len(p)-1]}
	}
	return h
}
