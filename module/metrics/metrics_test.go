package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func figures() Figures {
	return Figures{
		Sessions: CountSessions([][2]string{{"ready", "h1"}, {"ready", "h1"}, {"queued", ""}, {"starting", "h2"}}),
		Hosts: []HostFigure{
			{Name: "h1", Health: "healthy", Active: 2, MaxSessions: 4},
			{Name: "h2", Health: "unhealthy", Active: 1},
		},
		SSH: []SSHFigure{{Host: "h1", Open: 3, Busy: 1, Channels: 12, Dialed: 5, DialFailures: 2}},
	}
}

// A reload registers into a new registry while the old config still serves:
// both work, registering twice in one registry is no error, and counters
// keep counting across registries (they are the same collectors).
func TestRegisterTwiceAndAcrossReloads(t *testing.T) {
	old := prometheus.NewPedanticRegistry()
	if err := Register(old, figures); err != nil {
		t.Fatal(err)
	}
	if err := Register(old, figures); err != nil {
		t.Fatalf("second register in the same registry: %v", err)
	}
	CreationEnded(OutcomeReady)
	before := testutil.ToFloat64(creationsTotal.WithLabelValues(OutcomeReady))
	next := prometheus.NewPedanticRegistry()
	if err := Register(next, figures); err != nil {
		t.Fatal(err)
	}
	CreationEnded(OutcomeReady)
	if got := testutil.ToFloat64(creationsTotal.WithLabelValues(OutcomeReady)); got != before+1 {
		t.Fatalf("creations after reload: %v, want %v", got, before+1)
	}
	for _, reg := range []*prometheus.Registry{old, next} {
		if _, err := reg.Gather(); err != nil {
			t.Fatalf("gather (pedantic): %v", err)
		}
	}
}

func TestStateGaugesAndSummaryAgree(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := Register(reg, figures); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP remote_desktop_host_healthy 1 when the host passed its last checks and is in rotation health-wise.
# TYPE remote_desktop_host_healthy gauge
remote_desktop_host_healthy{host="h1"} 1
remote_desktop_host_healthy{host="h2"} 0
# HELP remote_desktop_queue_length Sessions waiting in the queue for a host.
# TYPE remote_desktop_queue_length gauge
remote_desktop_queue_length 1
# HELP remote_desktop_ssh_connections SSH connections open to the host, by state (idle; in_use: carrying at least one operation).
# TYPE remote_desktop_ssh_connections gauge
remote_desktop_ssh_connections{host="h1",state="idle"} 2
remote_desktop_ssh_connections{host="h1",state="in_use"} 1
# HELP remote_desktop_ssh_dial_failures_total SSH dials to the host that failed.
# TYPE remote_desktop_ssh_dial_failures_total counter
remote_desktop_ssh_dial_failures_total{host="h1"} 2
# HELP remote_desktop_ssh_operations_in_flight Docker operations running over the host's SSH connections (they share them, a channel per request).
# TYPE remote_desktop_ssh_operations_in_flight gauge
remote_desktop_ssh_operations_in_flight{host="h1"} 12
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"remote_desktop_host_healthy", "remote_desktop_queue_length", "remote_desktop_ssh_dial_failures_total",
		"remote_desktop_ssh_connections", "remote_desktop_ssh_operations_in_flight"); err != nil {
		t.Fatal(err)
	}
	sum := figures().Summary()
	if sum.Running != 2 || sum.Starting != 2 || sum.Queued != 1 || sum.HostsHealthy != 1 || sum.Hosts != 2 ||
		sum.Active != 3 || sum.Capacity != 4 || !sum.Unlimited {
		t.Fatalf("summary %+v", sum)
	}
	// The dashboard's "running" is the sum of the ready series.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ready := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "remote_desktop_sessions" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == "ready" {
					ready += m.GetGauge().GetValue()
				}
			}
		}
	}
	if int(ready) != sum.Running {
		t.Fatalf("sum(sessions{state=ready}) = %v, summary running = %d", ready, sum.Running)
	}
}

func TestReadyObservesEveryStage(t *testing.T) {
	before := map[string]uint64{}
	for _, st := range Stages {
		before[st] = histCount(t, st)
	}
	Ready(3*time.Second, map[string]time.Duration{"queued": time.Millisecond, "scheduling": time.Millisecond,
		"starting": time.Second, "waiting_for_desktop": 2 * time.Second})
	for _, st := range Stages {
		if got := histCount(t, st); got != before[st]+1 {
			t.Fatalf("stage %s: %d observations, want %d", st, got, before[st]+1)
		}
	}
}

func histCount(t *testing.T, stage string) uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(stageSeconds)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == stage {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
