package responder

import (
	"reflect"
	"testing"
)

// TestHull: the outline of a grid's devices is their convex hull: inner,
// repeated and collinear points left out; one or two points, or a line,
// stay as they are for the console to ring.
func TestHull(t *testing.T) {
	for _, c := range []struct {
		name string
		in   [][2]float64
		want [][2]float64
	}{
		{"none", nil, [][2]float64{}},
		{"one", [][2]float64{{24, 109}}, [][2]float64{{24, 109}}},
		{"same twice", [][2]float64{{24, 109}, {24, 109}}, [][2]float64{{24, 109}}},
		{"line", [][2]float64{{24, 109}, {24.1, 109.1}, {24.2, 109.2}}, [][2]float64{{24, 109}, {24.2, 109.2}}},
		{"square with inner and edge points", [][2]float64{{0, 0}, {1, 1}, {0.5, 0.5}, {1, 0}, {0, 1}, {0.5, 0}, {0.2, 0.7}},
			// counter-clockwise in (lon, lat) from the west-most, south-most
			[][2]float64{{0, 0}, {0, 1}, {1, 1}, {1, 0}}},
	} {
		got := hull(c.in)
		if len(got) == 0 && len(c.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: hull %v, want %v", c.name, got, c.want)
		}
	}
}
