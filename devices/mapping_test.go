package devices

import (
	"strings"
	"testing"
)

func TestMapTarget(t *testing.T) {
	if _, probs, ok := MapTarget(KindElectrical, "no_such_metric", "", 0); ok || len(probs) != 1 || !strings.Contains(probs[0], "not in the catalog") {
		t.Fatalf("unknown metric: ok %v, %q", ok, probs)
	}
	m, probs, ok := MapTarget(KindElectrical, "residual_current_ma", "mA", 0)
	if !ok || len(probs) != 0 || m.Info().Name != "residual_current_ma" {
		t.Fatalf("good entry: %v %q %v", m, probs, ok)
	}
	if _, probs, ok := MapTarget(KindElectrical, "residual_current_ma", "A", 2); !ok || len(probs) != 2 ||
		!strings.Contains(probs[0], "convert with scale") || !strings.Contains(probs[1], "remove ch") {
		t.Fatalf("wrong unit and a channel on a metric without: %q", probs)
	}
}
