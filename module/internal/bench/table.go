package bench

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Percentile is the nearest-rank percentile (p in 0..100) of sorted
// values: the smallest value with at least p% of the values at or below it.
func Percentile[T int64 | float64 | time.Duration](sorted []T, p float64) T {
	if len(sorted) == 0 {
		var zero T
		return zero
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Sorted returns a sorted copy.
func Sorted[T int64 | float64 | time.Duration](v []T) []T {
	out := append([]T(nil), v...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Median of v (the lower middle for an even count, as nearest-rank P50).
func Median[T int64 | float64 | time.Duration](v []T) T { return Percentile(Sorted(v), 50) }

// Row is one figure of the table.
type Row struct {
	Figure  string // what is compared
	Ratio   string // the measured ratio ("1.08×") or count
	Target  string // "≤ 1.15×", "" if none
	Verdict string // "met", "MISSED", "—"
	Context string // absolute numbers, for context only
}

// Table is the benchmark's one table.
type Table struct {
	Rows []Row
}

// Add appends a row.
func (t *Table) Add(r Row) { t.Rows = append(t.Rows, r) }

// Markdown renders the table.
func (t *Table) Markdown() string {
	var b strings.Builder
	b.WriteString("| # | figure | measured | target | verdict | context (absolute, this run) |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for i, r := range t.Rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", i+1, r.Figure, r.Ratio, dash(r.Target), dash(r.Verdict), r.Context)
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// X formats a ratio.
func X(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", r)
}

// AtMost and AtLeast give the verdict of a ratio against a target.
func AtMost(r, target float64) string  { return verdict(!math.IsNaN(r) && r <= target) }
func AtLeast(r, target float64) string { return verdict(!math.IsNaN(r) && r >= target) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**MISSED**"
}

// Ms formats a duration in milliseconds.
func Ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

// MiB formats bytes.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Div is a/b as float64, NaN when b is 0.
func Div[T int64 | float64 | time.Duration | int](a, b T) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}
