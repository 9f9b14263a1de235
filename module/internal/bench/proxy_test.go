package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Settings of figures 2 and 3.
const (
	proxyRounds   = 5 // each target once per round, in a rotating order
	wrkThreads    = 1
	wrkConns      = 16
	wrkRunFor     = 3 * time.Second
	wsWorkers     = 8
	wsMaxConnects = 50000
	wsConnectDur  = 2 * time.Second
	wsFrame       = 32 << 10
	wsWarmup      = 500 * time.Millisecond
	wsDur         = 2 * time.Second
	proxyUser     = 201
)

// benchTiny runs figures 2, 3 and 4 on one Caddy whose hosts run the tiny
// image.
func (r *rig) benchTiny(t *testing.T) {
	c, instance := r.startCaddy(t, caddyConf{image: r.tb.TinyImage}, "")
	a := r.api(c)
	if r.want("proxy-and-herd") || r.want("proxy") {
		t.Run("proxy", func(t *testing.T) { r.benchProxy(t, c, a) })
	}
	if r.want("proxy-and-herd") || r.want("herd") {
		t.Run("herd", func(t *testing.T) { r.benchHerd(t, c, a, instance) })
	}
}

// proxyTarget is one way to reach the same container.
type proxyTarget struct {
	name    string
	url     string   // the static file
	headers []string // for wrk and the websocket
	ws      WSTarget
}

// benchProxy is figures 2 and 3: a static file and websocket connects
// through the module, plain Caddy reverse_proxy, nginx + auth_request to
// the module's auth-check, and direct; then websocket echo throughput.
func (r *rig) benchProxy(t *testing.T, c *e2e.Caddy, a *api) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := a.create(ctx, proxyUser); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.waitReady(ctx, proxyUser, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.destroy(context.Background(), proxyUser) }()
	addr, err := a.target(ctx, proxyUser)
	if err != nil {
		t.Fatal(err)
	}
	cookie := "Cookie: session=" + r.cookie(proxyUser)
	caddyHost := strings.TrimPrefix(c.URL, "http://")

	plain := e2e.StartCaddy(t, e2e.CaddyOptions{Caddyfile: fmt.Sprintf(`{
	admin {{ADMIN}}
}
http://127.0.0.1:{{PORT}} {
	reverse_proxy %s
}
`, addr)})
	nport, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ngx, err := StartNginx(t.TempDir(), nport, c.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer ngx.Stop()
	plainHost := strings.TrimPrefix(plain.URL, "http://")
	ngxHost := net.JoinHostPort("127.0.0.1", strconv.Itoa(nport))
	vnc := "/remote-desktop/vnc/" + strconv.Itoa(proxyUser)
	hdr := func(origin string, cookie bool) http.Header {
		h := http.Header{"Origin": {origin}}
		if cookie {
			h.Set("Cookie", "session="+r.cookie(proxyUser))
		}
		return h
	}
	targets := []proxyTarget{
		{"module", c.URL + vnc + "/vnc.html", []string{cookie}, WSTarget{Addr: caddyHost, Path: vnc + "/websockify", Header: hdr(c.URL, true)}},
		{"plain reverse_proxy", plain.URL + "/vnc.html", nil, WSTarget{Addr: plainHost, Path: "/websockify", Header: hdr(plain.URL, false)}},
		{"nginx + auth_request", "http://" + ngxHost + vnc + "/vnc.html", []string{cookie}, WSTarget{Addr: ngxHost, Path: vnc + "/websockify", Header: hdr("http://"+ngxHost, true)}},
		{"direct", "http://" + addr + "/vnc.html", nil, WSTarget{Addr: addr, Path: "/websockify", Header: hdr("http://"+addr, false)}},
	}
	// Every path works (and the identity cache is warm) before measuring.
	client := NewHTTPClient(4, 10*time.Second)
	for _, tg := range targets {
		if err := httpGetOK(ctx, client, tg.url, tg.headers, "rd-tiny"); err != nil {
			t.Fatalf("%s: %v\nnginx error log:\n%s", tg.name, err, ngx.ErrorLog())
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		w, err := wsDial(wctx, tg.ws)
		wcancel()
		if err != nil {
			t.Fatalf("%s websocket: %v\nnginx error log:\n%s", tg.name, err, ngx.ErrorLog())
		}
		w.Close()
	}

	n := len(targets)
	rps := make([][]float64, n)
	p50 := make([][]time.Duration, n)
	p99 := make([][]time.Duration, n)
	cps := make([][]float64, n)
	c50 := make([][]time.Duration, n)
	c99 := make([][]time.Duration, n)
	bps := make([][]float64, n)
	for round := range proxyRounds {
		for k := range n {
			i := (k + round) % n
			tg := targets[i]
			var prof chan error
			if os.Getenv(EnvProfile) == "1" && round == 0 && (i == 0 || i == 1) {
				// A CPU profile of the Caddy serving this run, for reading
				// where the time goes (skews this round a little).
				admin := c.AdminAddr
				if i == 1 {
					admin = plain.AdminAddr
				}
				prof = make(chan error, 1)
				go func() { prof <- saveProfile(ctx, admin, wrkRunFor-time.Second, fmt.Sprintf("static-%d.pprof", i)) }()
			}
			res, err := Wrk(ctx, tg.url, tg.headers, wrkThreads, wrkConns, wrkRunFor)
			if prof != nil {
				if perr := <-prof; perr != nil {
					t.Logf("profile: %v", perr)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Non2xx > 0 || res.SocketErrors > 0 {
				t.Fatalf("%s: %d non-2xx answers, %d socket errors in %d requests", tg.name, res.Non2xx, res.SocketErrors, res.Requests)
			}
			rps[i], p50[i], p99[i] = append(rps[i], res.RPS), append(p50[i], res.P50), append(p99[i], res.P99)
			t.Logf("round %d %-22s static  %8.0f req/s  p50 %v  p99 %v", round, tg.name, res.RPS, res.P50, res.P99)
		}
		for k := range n {
			i := (k + round) % n
			tg := targets[i]
			res := WSConnectLoad(ctx, tg.ws, wsWorkers, wsMaxConnects, wsConnectDur)
			if res.Errors > 0 || res.N == 0 {
				t.Fatalf("%s: %d of %d websocket connects failed; first: %v", tg.name, res.Errors, res.Errors+res.N, res.First)
			}
			cps[i] = append(cps[i], res.Rate())
			c50[i] = append(c50[i], Percentile(res.Lat, 50))
			c99[i] = append(c99[i], Percentile(res.Lat, 99))
			t.Logf("round %d %-22s ws conn %8.0f /s     p50 %v  p99 %v", round, tg.name, res.Rate(), Percentile(res.Lat, 50), Percentile(res.Lat, 99))
		}
		for k := range n {
			i := (k + round) % n
			tg := targets[i]
			b, err := WSThroughput(ctx, tg.ws, wsFrame, wsWarmup, wsDur)
			if err != nil {
				t.Fatalf("%s throughput: %v", tg.name, err)
			}
			bps[i] = append(bps[i], b)
			t.Logf("round %d %-22s ws echo %8.1f MB/s", round, tg.name, b/1e6)
		}
	}
	const mod, pl, ng, di = 0, 1, 2, 3
	med := func(v []float64) float64 { return Median(v) }
	ctxLine := func(vals [][]float64, l50, l99 [][]time.Duration, unit string) string {
		var parts []string
		for i, tg := range targets {
			parts = append(parts, fmt.Sprintf("%s %.0f %s (P50 %s, P99 %s)", tg.name, med(vals[i]), unit, Ms(Median(l50[i])), Ms(Median(l99[i]))))
		}
		return strings.Join(parts, "; ")
	}
	// The machine is shared and its load drifts: each ratio is the median
	// of the per-round ratios (targets measured seconds apart), the
	// absolute numbers are medians over the rounds.
	paired := func(v [][]float64, a, b int) float64 {
		var rs []float64
		for k := range v[a] {
			rs = append(rs, v[a][k]/v[b][k])
		}
		return Median(rs)
	}
	rPlain, rNginx := paired(rps, mod, pl), paired(rps, mod, ng)
	r.add(secProxy, Row{
		Figure:  "Static file (/vnc.html of rd-tiny), req/s: module ÷ plain Caddy reverse_proxy",
		Ratio:   X(rPlain),
		Target:  "≥ 0.90×",
		Verdict: AtLeast(rPlain, 0.90),
		Context: ctxLine(rps, p50, p99, "req/s") + fmt.Sprintf("; module ÷ direct %s", X(paired(rps, mod, di))),
	})
	r.add(secProxy, Row{
		Figure:  "Static file, req/s: module ÷ nginx + auth_request (to the module's auth-check)",
		Ratio:   X(rNginx),
		Target:  "≥ 3×",
		Verdict: AtLeast(rNginx, 3),
		Context: fmt.Sprintf("latency P50 module %s vs nginx %s; P99 %s vs %s",
			Ms(Median(p50[mod])), Ms(Median(p50[ng])), Ms(Median(p99[mod])), Ms(Median(p99[ng]))),
	})
	wPlain, wNginx := paired(cps, mod, pl), paired(cps, mod, ng)
	r.add(secProxy, Row{
		Figure:  "Websocket connects/s (handshake + first message): module ÷ plain reverse_proxy",
		Ratio:   X(wPlain),
		Target:  "≥ 0.90×",
		Verdict: AtLeast(wPlain, 0.90),
		Context: ctxLine(cps, c50, c99, "/s") + fmt.Sprintf("; module ÷ direct %s", X(paired(cps, mod, di))),
	})
	r.add(secProxy, Row{
		Figure:  "Websocket connects/s: module ÷ nginx + auth_request",
		Ratio:   X(wNginx),
		Target:  "≥ 3×",
		Verdict: AtLeast(wNginx, 3),
		Context: fmt.Sprintf("connect P50 module %s vs nginx %s", Ms(Median(c50[mod])), Ms(Median(c50[ng]))),
	})
	rT := paired(bps, mod, di)
	var parts []string
	for i, tg := range targets {
		parts = append(parts, fmt.Sprintf("%s %.0f MB/s", tg.name, med(bps[i])/1e6))
	}
	r.add(secWSThroughput, Row{
		Figure:  fmt.Sprintf("Websocket echo throughput (one connection, %d KiB frames): module ÷ direct", wsFrame>>10),
		Ratio:   X(rT),
		Target:  "≥ 0.90×",
		Verdict: AtLeast(rT, 0.90),
		Context: strings.Join(parts, "; ") + fmt.Sprintf("; module ÷ plain %s; nginx ÷ direct %s", X(paired(bps, mod, pl)), X(paired(bps, ng, di))),
	})
}

// EnvProfile=1 saves CPU profiles of the module's and plain Caddy's static
// runs (round 0) to out/bench-logs/static-{0,1}.pprof.
const EnvProfile = "RD_BENCH_PROFILE"

func saveProfile(ctx context.Context, admin string, d time.Duration, name string) error {
	client := NewHTTPClient(1, d+30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(d.Seconds())), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	root, err := testbed.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "out", "bench-logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), b, 0o644)
}
