package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Metrics is one scrape of Caddy's /metrics.
type Metrics struct {
	Raw      []byte
	Families map[string]*dto.MetricFamily
}

// Scrape GETs /metrics from Caddy's admin endpoint (adminAddr, host:port)
// and parses it; the test fails on any error.
func Scrape(t testing.TB, adminAddr string) *Metrics {
	t.Helper()
	client := LoopbackClient(10 * time.Second)
	resp, err := client.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%.500s", resp.StatusCode, err, raw)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return &Metrics{Raw: raw, Families: fams}
}

// Has reports whether the scrape has a series named name: a family, or a
// histogram's or summary's _bucket, _sum or _count.
func (m *Metrics) Has(name string) bool {
	if _, ok := m.Families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := m.Families[base]; ok && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				return true
			}
		}
	}
	return false
}

// Value sums the series of family name whose labels include every pair of
// labels: a counter's or gauge's value, or a histogram's sample count. ok is
// false when no series matches.
func (m *Metrics) Value(name string, labels map[string]string) (sum float64, ok bool) {
	f := m.Families[name]
	if f == nil {
		return 0, false
	}
	for _, s := range f.GetMetric() {
		if !hasLabels(s, labels) {
			continue
		}
		ok = true
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Histogram != nil:
			sum += float64(s.GetHistogram().GetSampleCount())
		case s.Untyped != nil:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum, ok
}

func hasLabels(s *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range s.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// Promtool returns the path of Prometheus's promtool. Without it the test
// is skipped, or fails under RD_TESTBED_REQUIRED=1 (`make test` installs it
// with testdata/monitoring/ensure-promtool.sh).
func Promtool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	msg := "promtool is not installed (run: bash testdata/monitoring/ensure-promtool.sh)"
	if os.Getenv(testbed.EnvRequired) == "1" {
		t.Fatalf("%s", msg)
	}
	t.Skip(msg)
	return ""
}

// RunPromtool runs promtool with args, stdin as its input, and fails the
// test with its output when it exits non-zero.
func RunPromtool(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Promtool(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// MonitoringFile is the path of a file in testdata/monitoring.
func MonitoringFile(t testing.TB, name string) string {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "testdata", "monitoring", name)
}
