// Package metrics is the module's Prometheus metrics, registered in Caddy's
// own registry so they appear wherever the operator already scrapes Caddy
// (the admin endpoint's /metrics, or a `metrics` handler).
//
// Two kinds live here. Counters and histograms of things that happen
// (events, creations, stage durations, SSH operations, identity lookups,
// desktop bytes) are package-level collectors fed by thin hooks the domain
// packages call; being package-level, they outlive config reloads, so a
// reload neither resets them nor registers them twice. Gauges that mirror
// state (sessions by state, hosts, queue, SSH connections) are computed at
// scrape time from a Figures snapshot (see state.go), the same snapshot the
// admin dashboard's figures come from.
package metrics

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "remote_desktop"

// Stages of a creation, in order, as observed by StageDuration.
var Stages = []string{"queued", "scheduling", "starting", "waiting_for_desktop"}

// Creation outcomes.
const (
	OutcomeReady     = "ready"     // the desktop answered
	OutcomeFailed    = "failed"    // no host could start it
	OutcomeCancelled = "cancelled" // destroyed (by its player, an admin or shutdown) before ready
)

// Identity lookup results.
var identityResults = []string{"ok", "unauthenticated", "forbidden", "unavailable"}

// durationBuckets cover a desktop start: from a warm 50 ms stage to a
// five-minute queue.
var durationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300}

var (
	eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "events_total",
		Help: "Events written to the admin event log, by type.",
	}, []string{"type"})

	creationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "session_creations_total",
		Help: "Session creations that ended, by outcome (ready, failed, cancelled).",
	}, []string{"outcome"})

	stageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "session_stage_duration_seconds",
		Help:    "Time a session that became ready spent in each creation stage.",
		Buckets: durationBuckets,
	}, []string{"stage"})

	readySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "session_time_to_ready_seconds",
		Help:    "Time from a create request to a ready desktop.",
		Buckets: durationBuckets,
	})

	queueWaitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "queue_wait_seconds",
		Help:    "Time a session waited in the queue before a host was chosen for it.",
		Buckets: append([]float64{0.001, 0.01}, durationBuckets...),
	})

	sshOpSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "ssh_operation_duration_seconds",
		Help:    "Docker operations over a host's SSH pool, including waiting for a connection, by host and result.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"host", "result"})

	identityTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "identity_lookups_total",
		Help: "Who-is-this lookups, by result; cache=\"hit\" when CTFd was not asked (cached or shared answer, or no cookie).",
	}, []string{"result", "cache"})

	streamsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "desktop_streams",
		Help: "Desktop websocket connections open through the proxy.",
	})

	streamBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "desktop_stream_bytes_total",
		Help: "Bytes carried by desktop websockets, by direction (to_desktop, from_desktop).",
	}, []string{"direction"})

	placementsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "warm_claims_total",
		Help: "Sessions placed on a host, by how (warm: a warm desktop claimed; cold: a container started for it).",
	}, []string{"outcome"})

	sseClients = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sse_clients",
		Help: "Admin event streams (SSE) open.",
	})
)

var collectors = []prometheus.Collector{
	eventsTotal, creationsTotal, stageSeconds, readySeconds, queueWaitSeconds,
	sshOpSeconds, identityTotal, streamsOpen, streamBytes, sseClients, placementsTotal,
}

func init() {
	// Every bounded label value exists from the start, so dashboards and
	// alerts see 0 rather than "no data".
	for _, o := range []string{OutcomeReady, OutcomeFailed, OutcomeCancelled} {
		creationsTotal.WithLabelValues(o)
	}
	for _, s := range Stages {
		stageSeconds.WithLabelValues(s)
	}
	for _, r := range identityResults {
		identityTotal.WithLabelValues(r, "hit")
		identityTotal.WithLabelValues(r, "miss")
	}
	placementsTotal.WithLabelValues(PlacedWarm)
	placementsTotal.WithLabelValues(PlacedCold)
	streamBytes.WithLabelValues("to_desktop")
	streamBytes.WithLabelValues("from_desktop")
}

// Register adds the module's collectors to reg (Caddy's registry for one
// config), plus a collector of the live state read from figures at each
// scrape. Registering again in the same registry is not an error.
func Register(reg prometheus.Registerer, figures func() Figures) error {
	all := append(append([]prometheus.Collector(nil), collectors...), &stateCollector{figures: figures})
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// EventTypes makes a zero series for each event type.
func EventTypes(types ...string) {
	for _, t := range types {
		eventsTotal.WithLabelValues(t)
	}
}

// Event counts one event of the log.
func Event(typ string) { eventsTotal.WithLabelValues(typ).Inc() }

// How a session was placed (Placed).
const (
	PlacedWarm = "warm"
	PlacedCold = "cold"
)

// Placed counts a session placed on a host, warm or cold.
func Placed(outcome string) { placementsTotal.WithLabelValues(outcome).Inc() }

// CreationEnded counts a creation's outcome.
func CreationEnded(outcome string) { creationsTotal.WithLabelValues(outcome).Inc() }

// Ready records a session that became ready: its time to ready and the
// time spent in each stage (summed over retries on other hosts).
func Ready(total time.Duration, stages map[string]time.Duration) {
	readySeconds.Observe(total.Seconds())
	for st, d := range stages {
		stageSeconds.WithLabelValues(st).Observe(d.Seconds())
	}
}

// QueueWait records how long a session waited for a host.
func QueueWait(d time.Duration) { queueWaitSeconds.Observe(d.Seconds()) }

// SSHOperation records one Docker operation over a host's SSH pool.
func SSHOperation(host string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	sshOpSeconds.WithLabelValues(host, result).Observe(d.Seconds())
}

// IdentityLookup counts one lookup: result is ok, unauthenticated,
// forbidden or unavailable; cached says the cache (or a lookup already in
// flight) answered.
func IdentityLookup(result string, cached bool) {
	cache := "miss"
	if cached {
		cache = "hit"
	}
	identityTotal.WithLabelValues(result, cache).Inc()
}

// StreamOpened counts an open desktop websocket; call the returned func
// when it closes.
func StreamOpened() (closed func()) {
	streamsOpen.Inc()
	return streamsOpen.Dec
}

// StreamBytes adds bytes carried by desktop websockets.
func StreamBytes(toDesktop, fromDesktop int64) {
	if toDesktop > 0 {
		streamBytes.WithLabelValues("to_desktop").Add(float64(toDesktop))
	}
	if fromDesktop > 0 {
		streamBytes.WithLabelValues("from_desktop").Add(float64(fromDesktop))
	}
}

// SSEClientOpened counts an open admin event stream; call the returned
// func when it closes.
func SSEClientOpened() (closed func()) {
	sseClients.Inc()
	return sseClients.Dec
}
