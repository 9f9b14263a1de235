package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run reports.
type WrkResult struct {
	Requests      int64
	Elapsed       time.Duration
	RPS           float64
	P50, P90, P99 time.Duration
	Non2xx        int64 // "Non-2xx or 3xx responses"
	SocketErrors  int64 // connect + read + write + timeout
}

// Wrk runs `wrk -t threads -c conns -d dur --latency` against url with the
// extra headers ("Name: value"), bounded by dur plus a margin.
func Wrk(ctx context.Context, url string, headers []string, threads, conns int, dur time.Duration) (WrkResult, error) {
	if err := checkAllowedURL(url); err != nil {
		return WrkResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", max(int(dur.Round(time.Second)/time.Second), 1)), "--timeout", "5s", "--latency"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	cmd := exec.CommandContext(ctx, "wrk", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return WrkResult{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out.String())
	}
	res, err := ParseWrk(out.String())
	if err != nil {
		return res, fmt.Errorf("wrk %s: %w\n%s", url, err, out.String())
	}
	return res, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m),`)
	wrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s*(50|90|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
	wrkSockErr = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// ParseWrk reads wrk's text output (with --latency).
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request total in wrk output")
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.Elapsed = wrkDuration(m[2], m[3])
	m = wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output")
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		d := wrkDuration(m[2], m[3])
		switch m[1] {
		case "50":
			r.P50 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, fmt.Errorf("no latency distribution in wrk output (want --latency)")
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	return r, nil
}

func wrkDuration(num, unit string) time.Duration {
	f, _ := strconv.ParseFloat(num, 64)
	switch strings.ToLower(unit) {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	case "s":
		return time.Duration(f * float64(time.Second))
	case "m":
		return time.Duration(f * float64(time.Minute))
	}
	return 0
}
