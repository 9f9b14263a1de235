package system

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// metricsOf scrapes the admin endpoint's /metrics.
func (s *system) metrics() *e2e.Metrics {
	s.t.Helper()
	return e2e.Scrape(s.t, s.Caddy.AdminAddr)
}

func val(t *testing.T, m *e2e.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := m.Value(name, labels)
	if !ok {
		t.Fatalf("scrape has no %s%v", name, labels)
	}
	return v
}

type lbl = map[string]string

var stages = []string{"queued", "scheduling", "starting", "waiting_for_desktop"}

// One real session's life on the test bed, seen through /metrics: created →
// ready → destroyed counts, one observation per stage, the state gauges
// (the same numbers as the admin dashboard's summary), the open desktop
// stream and its bytes, the admin SSE client; a `caddy reload` in the
// middle neither resets a counter nor fails to register; and promtool
// accepts the scrape.
func TestMetricsFollowASessionAndSurviveReload(t *testing.T) {
	s := newSystem(t, sysConfig{})
	before := s.metrics()
	counters := func(m *e2e.Metrics) map[string]float64 {
		out := map[string]float64{
			"created":   val(t, m, "remote_desktop_events_total", lbl{"type": "session_created"}),
			"ready":     val(t, m, "remote_desktop_events_total", lbl{"type": "session_ready"}),
			"destroyed": val(t, m, "remote_desktop_events_total", lbl{"type": "session_destroyed"}),
			"timer":     val(t, m, "remote_desktop_events_total", lbl{"type": "session_timer_started"}),
			"ok":        val(t, m, "remote_desktop_session_creations_total", lbl{"outcome": "ready"}),
			"ttr":       val(t, m, "remote_desktop_session_time_to_ready_seconds", nil),
			"lookups":   val(t, m, "remote_desktop_identity_lookups_total", nil),
		}
		for _, st := range stages {
			out["stage "+st] = val(t, m, "remote_desktop_session_stage_duration_seconds", lbl{"stage": st})
		}
		return out
	}
	c0 := counters(before)

	sess := s.createReady(alice)
	host, _ := sess["host"].(string)
	s.WaitHostsHealthy(2 * time.Minute)
	m1 := s.metrics()
	c1 := counters(m1)
	for k, d := range map[string]float64{"created": 1, "ready": 1, "ok": 1, "ttr": 1, "timer": 1,
		"stage queued": 1, "stage scheduling": 1, "stage starting": 1, "stage waiting_for_desktop": 1} {
		if c1[k]-c0[k] != d {
			t.Errorf("%s: %v → %v, want +%v", k, c0[k], c1[k], d)
		}
	}
	if c1["lookups"] <= c0["lookups"] {
		t.Errorf("identity lookups did not grow: %v → %v", c0["lookups"], c1["lookups"])
	}
	if got := val(t, m1, "remote_desktop_sessions", lbl{"state": "ready", "host": host}); got != 1 {
		t.Errorf("sessions{state=ready,host=%s} = %v, want 1", host, got)
	}
	if got := val(t, m1, "remote_desktop_host_sessions", lbl{"host": host}); got != 1 {
		t.Errorf("host_sessions{host=%s} = %v, want 1", host, got)
	}
	for _, h := range s.Bed.Hosts {
		if got := val(t, m1, "remote_desktop_host_healthy", lbl{"host": h.IP}); got != 1 {
			t.Errorf("host_healthy{host=%s} = %v, want 1", h.IP, got)
		}
	}

	// The dashboard's figures are the gauges' numbers.
	var hostsAnswer struct {
		Data struct {
			Summary map[string]any `json:"summary"`
		} `json:"data"`
	}
	_, out, _ := s.req(e2e.AdminUserID, http.MethodGet, "/remote-desktop/admin/api/hosts", "", nil)
	raw, _ := json.Marshal(out)
	_ = json.Unmarshal(raw, &hostsAnswer)
	sum := hostsAnswer.Data.Summary
	m2 := s.metrics()
	for field, metric := range map[string]float64{
		"running":       val(t, m2, "remote_desktop_sessions", lbl{"state": "ready"}),
		"hosts_healthy": val(t, m2, "remote_desktop_host_healthy", nil),
		"active":        val(t, m2, "remote_desktop_host_sessions", nil),
		"queued":        val(t, m2, "remote_desktop_queue_length", nil),
	} {
		if got, _ := sum[field].(float64); got != metric {
			t.Errorf("dashboard %s = %v, metric = %v (summary %v)", field, sum[field], metric, sum)
		}
	}

	// A desktop stream and an admin event stream, open at the scrape.
	code, ws := s.dialWS(alice, fmt.Sprintf("/remote-desktop/vnc/%d/websockify", alice), s.Caddy.URL)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", code)
	}
	if p, err := ws.ReadWithin(5 * time.Second); err != nil || !strings.HasPrefix(string(p), "RFB") {
		t.Fatalf("greeting %q %v", p, err)
	}
	sse := s.openSSE(t)
	m3 := s.metrics()
	if got := val(t, m3, "remote_desktop_desktop_streams", nil); got != 1 {
		t.Errorf("desktop_streams = %v, want 1", got)
	}
	if got := val(t, m3, "remote_desktop_desktop_stream_bytes_total", lbl{"direction": "from_desktop"}) -
		val(t, before, "remote_desktop_desktop_stream_bytes_total", lbl{"direction": "from_desktop"}); got < 12 {
		t.Errorf("bytes from the desktop grew by %v, want at least the 12-byte RFB greeting", got)
	}
	if got := val(t, m3, "remote_desktop_sse_clients", nil); got < 1 {
		t.Errorf("sse_clients = %v, want ≥ 1", got)
	}
	sse.Body.Close()
	ws.Close()

	// promtool accepts the scrape (lint included: names, units, help).
	e2e.RunPromtool(t, m3.Raw, "check", "metrics")
	series := 0
	for name, f := range m3.Families {
		if strings.HasPrefix(name, "remote_desktop_") {
			series += len(f.GetMetric())
		}
	}
	start := time.Now()
	s.metrics()
	t.Logf("MEASURED a scrape with one session on %d hosts: %d remote_desktop_ series (%d families) (scrape: %d bytes); answered in %v",
		len(s.Bed.Hosts), series, countPrefix(m3, "remote_desktop_"), len(m3.Raw), time.Since(start).Round(time.Millisecond))

	// A reload brings a new registry: no registration error, no reset.
	s.cfg.extra = "\t\tevent_log_size 600"
	if err := s.Caddy.Reload(s.caddyfile()); err != nil {
		t.Fatal(err)
	}
	m4 := s.metrics()
	c4 := counters(m4)
	for k, v := range c1 {
		if c4[k] < v {
			t.Errorf("%s went back after reload: %v → %v", k, v, c4[k])
		}
	}
	if logs := s.Caddy.Logs(); strings.Contains(logs, "register metrics") || strings.Contains(logs, "duplicate metrics collector") {
		t.Errorf("registration error in the log:\n%s", e2e.Tail(logs, 20))
	}
	if got := val(t, m4, "remote_desktop_sessions", lbl{"state": "ready", "host": host}); got != 1 {
		t.Errorf("after reload sessions{state=ready,host=%s} = %v, want 1", host, got)
	}

	if code, out, _ := s.req(alice, http.MethodPost, "/remote-desktop/api/destroy", "{}", nil); code != 200 {
		t.Fatalf("destroy: %d %v", code, out)
	}
	m5 := s.metrics()
	c5 := counters(m5)
	if d := c5["destroyed"] - c4["destroyed"]; d != 1 {
		t.Errorf("destroyed grew by %v, want 1", d)
	}
	if got := val(t, m5, "remote_desktop_sessions", lbl{"state": "ready"}); got != 0 {
		t.Errorf("sessions{state=ready} after destroy = %v, want 0", got)
	}
	if got := val(t, m5, "remote_desktop_desktop_streams", nil); got != 0 {
		t.Errorf("desktop_streams after close = %v, want 0", got)
	}
}

func countPrefix(m *e2e.Metrics, prefix string) int {
	n := 0
	for name := range m.Families {
		if strings.HasPrefix(name, prefix) {
			n++
		}
	}
	return n
}

// openSSE opens the admin event stream and reads its first line.
func (s *system) openSSE(t *testing.T) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.Caddy.URL+"/remote-desktop/admin/api/events/stream", nil)
	req.Header.Set("Cookie", "session="+s.Cookie(e2e.AdminUserID))
	resp, err := e2e.LoopbackClient(0).Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("event stream: %v", err)
	}
	return resp
}

var metricNameRE = regexp.MustCompile(`\bremote_desktop_[a-z_]+\b`)

// The Grafana dashboard is valid JSON, and every query in it, like every
// alert rule, names only metrics a real scrape has; promtool accepts the
// rules file.
func TestGrafanaDashboardAndAlertsUseRealMetrics(t *testing.T) {
	s := newSystem(t, sysConfig{})
	s.createReady(alice) // so the per-host SSH series exist
	m := s.metrics()

	raw, err := os.ReadFile(e2e.MonitoringFile(t, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json is not JSON: %v", err)
	}
	var exprs []string
	collectExprs(dash, &exprs)
	if len(exprs) < 8 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	rules, err := os.ReadFile(e2e.MonitoringFile(t, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, text := range append(exprs, string(rules)) {
		names := metricNameRE.FindAllString(text, -1)
		if len(names) == 0 && text != string(rules) {
			t.Errorf("query names no remote_desktop_ metric: %s", text)
		}
		for _, n := range names {
			if !m.Has(n) {
				missing = append(missing, n)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("metrics queried but not in the scrape: %v", missing)
	}
	e2e.RunPromtool(t, nil, "check", "rules", e2e.MonitoringFile(t, "alerts.yml"))
}

// collectExprs finds every Prometheus query ("expr") in a dashboard.
func collectExprs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "expr" {
				*out = append(*out, s)
				continue
			}
			collectExprs(c, out)
		}
	case []any:
		for _, c := range x {
			collectExprs(c, out)
		}
	}
}
