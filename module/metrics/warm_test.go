package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWarmGauges(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := Register(reg, func() Figures {
		return Figures{Warm: []WarmFigure{{Host: "h1", Target: 3, Ready: 2, Starting: 1, Refills: 7}}}
	}); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(placementsTotal.WithLabelValues(PlacedWarm))
	Placed(PlacedWarm)
	if got := testutil.ToFloat64(placementsTotal.WithLabelValues(PlacedWarm)); got != before+1 {
		t.Fatalf("warm claims %v, want %v", got, before+1)
	}
	want := `
# HELP remote_desktop_warm_desktops Warm desktops on the host, by state (ready, starting).
# TYPE remote_desktop_warm_desktops gauge
remote_desktop_warm_desktops{host="h1",state="ready"} 2
remote_desktop_warm_desktops{host="h1",state="starting"} 1
# HELP remote_desktop_warm_refills_total Warm desktops made ready on the host since start.
# TYPE remote_desktop_warm_refills_total counter
remote_desktop_warm_refills_total{host="h1"} 7
# HELP remote_desktop_warm_target Warm desktops the host's pool aims for (0 while drained or unhealthy).
# TYPE remote_desktop_warm_target gauge
remote_desktop_warm_target{host="h1"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"remote_desktop_warm_desktops", "remote_desktop_warm_target", "remote_desktop_warm_refills_total"); err != nil {
		t.Fatal(err)
	}
}
