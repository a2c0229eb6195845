package cluster

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestScriptMappings keeps the subject mapping that scripts/cluster.sh
// (make cluster) writes into its NATS nodes' configurations the same as
// ServerMappings: a different mapping would put devices in other
// partitions than firewatch computes (PartitionOf).
func TestScriptMappings(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		testenv.Skip(t, "no bash to run scripts/cluster.sh's mappings")
	}
	out, err := exec.Command(bash, "-c", `eval "$(sed -n '/^mappings() {/,/^} # end of mappings/p' ../scripts/cluster.sh)"; mappings 7`).CombinedOutput()
	if err != nil {
		t.Fatalf("mappings of scripts/cluster.sh: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), strings.TrimSpace(ServerMappings(7)); got != want {
		t.Errorf("scripts/cluster.sh writes\n%s\nServerMappings(7) is\n%s", got, want)
	}
}
