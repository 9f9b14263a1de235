package metrics

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Figures is the live state at one moment: what the state gauges export
// and what the admin dashboard's figures are computed from (one source, so
// the two always agree).
type Figures struct {
	Sessions []SessionCount `json:"sessions"` // live (not ended) sessions by state and host
	Hosts    []HostFigure   `json:"hosts"`
	SSH      []SSHFigure    `json:"ssh,omitempty"`
	Warm     []WarmFigure   `json:"warm,omitempty"` // the warm pool of each host
	// How long the oldest queued session has waited so far (0: none
	// queued): a stuck queue shows here before any session leaves it.
	QueueOldest time.Duration `json:"-"`
}

// SessionCount is how many live sessions are in one state on one host
// (host "" while queued).
type SessionCount struct {
	State string `json:"state"`
	Host  string `json:"host"`
	Count int    `json:"count"`
}

// HostFigure is one host's health and load.
type HostFigure struct {
	Name        string `json:"name"`
	Health      string `json:"health"` // healthy, unhealthy, unknown
	Drained     bool   `json:"drained"`
	Active      int    `json:"active"`       // sessions holding a slot on it
	MaxSessions int    `json:"max_sessions"` // 0: no limit
}

// WarmFigure is one host's warm pool.
type WarmFigure struct {
	Host     string `json:"host"`
	Target   int    `json:"target"`   // warm: N of the host (0 while drained or unhealthy)
	Ready    int    `json:"ready"`    // claimable now
	Starting int    `json:"starting"` // refills in flight
	Refills  int64  `json:"refills"`  // warm desktops made ready since start
}

// SSHFigure is one host's SSH pool. Its connections are shared: Busy
// counts those carrying at least one operation, Channels the operations in
// flight over all of them.
type SSHFigure struct {
	Host         string `json:"host"`
	Open         int    `json:"open"`
	Busy         int    `json:"busy"`
	Channels     int    `json:"channels"`
	Waiting      int    `json:"waiting"`
	Dialed       int64  `json:"dialed"`
	DialFailures int64  `json:"dial_failures"`
}

// Summary is what the admin dashboard shows at the top, derived from
// Figures; each number is also a PromQL expression over the state gauges
// (given beside each field).
type Summary struct {
	Running      int  `json:"running"`       // sum(remote_desktop_sessions{state="ready"})
	Starting     int  `json:"starting"`      // sum(remote_desktop_sessions{state!="ready"})
	Queued       int  `json:"queued"`        // remote_desktop_queue_length
	HostsHealthy int  `json:"hosts_healthy"` // sum(remote_desktop_host_healthy)
	Hosts        int  `json:"hosts"`         // count(remote_desktop_host_healthy)
	Active       int  `json:"active"`        // sum(remote_desktop_host_sessions)
	Capacity     int  `json:"capacity"`      // sum(remote_desktop_host_capacity_sessions)
	Unlimited    bool `json:"unlimited"`     // some host has no max_sessions
}

// Summary derives the dashboard's figures.
func (f Figures) Summary() Summary {
	var s Summary
	for _, c := range f.Sessions {
		switch c.State {
		case "ready":
			s.Running += c.Count
		default:
			s.Starting += c.Count
		}
		if c.State == "queued" {
			s.Queued += c.Count
		}
	}
	for _, h := range f.Hosts {
		s.Hosts++
		if h.Health == "healthy" {
			s.HostsHealthy++
		}
		s.Active += h.Active
		if h.MaxSessions > 0 {
			s.Capacity += h.MaxSessions
		} else {
			s.Unlimited = true
		}
	}
	return s
}

// CountSessions groups (state, host) pairs into sorted counts.
func CountSessions(pairs [][2]string) []SessionCount {
	n := map[[2]string]int{}
	for _, p := range pairs {
		n[p]++
	}
	out := make([]SessionCount, 0, len(n))
	for k, c := range n {
		out = append(out, SessionCount{State: k[0], Host: k[1], Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].State != out[j].State {
			return out[i].State < out[j].State
		}
		return out[i].Host < out[j].Host
	})
	return out
}

// Live states a session can be counted in.
var liveStates = []string{"queued", "scheduling", "starting", "waiting_for_desktop", "ready"}

var (
	descSessions = prometheus.NewDesc(namespace+"_sessions",
		"Live sessions by state and host (host empty while queued).", []string{"state", "host"}, nil)
	descQueue = prometheus.NewDesc(namespace+"_queue_length",
		"Sessions waiting in the queue for a host.", nil, nil)
	descQueueOldest = prometheus.NewDesc(namespace+"_queue_oldest_wait_seconds",
		"How long the oldest session still in the queue has waited so far; 0 when none is queued.", nil, nil)
	descHealthy = prometheus.NewDesc(namespace+"_host_healthy",
		"1 when the host passed its last checks and is in rotation health-wise.", []string{"host"}, nil)
	descHealth = prometheus.NewDesc(namespace+"_host_health",
		"1 for the host's current health (healthy, unhealthy, unknown).", []string{"host", "health"}, nil)
	descDrained = prometheus.NewDesc(namespace+"_host_drained",
		"1 when an admin drained the host (no new sessions).", []string{"host"}, nil)
	descLoad = prometheus.NewDesc(namespace+"_host_sessions",
		"Sessions holding a slot on the host (its load).", []string{"host"}, nil)
	descCapacity = prometheus.NewDesc(namespace+"_host_capacity_sessions",
		"The host's max_sessions; 0 means no limit.", []string{"host"}, nil)
	descWarm = prometheus.NewDesc(namespace+"_warm_desktops",
		"Warm desktops on the host, by state (ready, starting).", []string{"host", "state"}, nil)
	descWarmTarget = prometheus.NewDesc(namespace+"_warm_target",
		"Warm desktops the host's pool aims for (0 while drained or unhealthy).", []string{"host"}, nil)
	descWarmRefills = prometheus.NewDesc(namespace+"_warm_refills_total",
		"Warm desktops made ready on the host since start.", []string{"host"}, nil)
	descSSHOpen = prometheus.NewDesc(namespace+"_ssh_connections",
		"SSH connections open to the host, by state (idle; in_use: carrying at least one operation).", []string{"host", "state"}, nil)
	descSSHChannels = prometheus.NewDesc(namespace+"_ssh_operations_in_flight",
		"Docker operations running over the host's SSH connections (they share them, a channel per request).", []string{"host"}, nil)
	descSSHWaiting = prometheus.NewDesc(namespace+"_ssh_waiting_operations",
		"Operations waiting for a first SSH connection to the host to be dialed.", []string{"host"}, nil)
	descSSHDials = prometheus.NewDesc(namespace+"_ssh_dials_total",
		"SSH connections established to the host.", []string{"host"}, nil)
	descSSHDialFailures = prometheus.NewDesc(namespace+"_ssh_dial_failures_total",
		"SSH dials to the host that failed.", []string{"host"}, nil)
)

// stateCollector exports Figures at scrape time.
type stateCollector struct {
	figures func() Figures
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descQueue, descQueueOldest, descHealthy, descHealth, descDrained,
		descLoad, descCapacity, descWarm, descWarmTarget, descWarmRefills, descSSHOpen, descSSHChannels, descSSHWaiting, descSSHDials, descSSHDialFailures} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.figures()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	// Every live state on every host, zeros included, so a panel's series
	// do not come and go with the sessions.
	counts := map[[2]string]int{}
	for _, s := range f.Sessions {
		counts[[2]string{s.State, s.Host}] += s.Count
	}
	for _, st := range liveStates {
		if st == "queued" {
			gauge(descSessions, float64(counts[[2]string{st, ""}]), st, "")
			delete(counts, [2]string{st, ""})
			continue
		}
		for _, h := range f.Hosts {
			gauge(descSessions, float64(counts[[2]string{st, h.Name}]), st, h.Name)
			delete(counts, [2]string{st, h.Name})
		}
	}
	for k, n := range counts { // a host removed by a reload while its sessions run
		gauge(descSessions, float64(n), k[0], k[1])
	}
	gauge(descQueue, float64(f.Summary().Queued))
	gauge(descQueueOldest, f.QueueOldest.Seconds())
	for _, h := range f.Hosts {
		gauge(descHealthy, b2f(h.Health == "healthy"), h.Name)
		for _, hs := range []string{"healthy", "unhealthy", "unknown"} {
			gauge(descHealth, b2f(h.Health == hs), h.Name, hs)
		}
		gauge(descDrained, b2f(h.Drained), h.Name)
		gauge(descLoad, float64(h.Active), h.Name)
		gauge(descCapacity, float64(h.MaxSessions), h.Name)
	}
	for _, w := range f.Warm {
		gauge(descWarm, float64(w.Ready), w.Host, "ready")
		gauge(descWarm, float64(w.Starting), w.Host, "starting")
		gauge(descWarmTarget, float64(w.Target), w.Host)
		counter(descWarmRefills, float64(w.Refills), w.Host)
	}
	for _, s := range f.SSH {
		gauge(descSSHOpen, float64(s.Open-s.Busy), s.Host, "idle")
		gauge(descSSHOpen, float64(s.Busy), s.Host, "in_use")
		gauge(descSSHChannels, float64(s.Channels), s.Host)
		gauge(descSSHWaiting, float64(s.Waiting), s.Host)
		counter(descSSHDials, float64(s.Dialed), s.Host)
		counter(descSSHDialFailures, float64(s.DialFailures), s.Host)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
