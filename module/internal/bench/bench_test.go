package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// EnvBench=1 runs TestBench; EnvOnly (a comma-separated list of ssh,
// time-to-desktop, proxy-and-herd, footprint, abuse) runs only those phases.
const (
	EnvBench = "RD_BENCH"
	EnvOnly  = "RD_BENCH_ONLY"
)

// Sections of the table, in the order of the issue.
const (
	secDesktop = iota
	secProxy
	secWSThroughput
	secHerd
	secFootprint
	secSSH
	secAbuse
	numSections
)

var sectionNames = [numSections]string{"time to desktop", "proxy overhead", "websocket throughput", "herd", "footprint", "SSH", "abuse"}

// rig is what every phase shares: the test bed, the CTFd stand-in, and the
// table being filled.
type rig struct {
	tb       *testbed.Testbed
	ctfd     *e2e.CTFd
	run      string // unique per run: bench-<pid>-<rand>
	noHosts  string // a hosts.yml that does not exist
	mu       sync.Mutex
	cookies  map[int]string
	users    map[int]bool
	rows     [numSections][]Row
	notes    []string
	machine  string
	caddySeq int
	only     map[string]bool // RD_BENCH_ONLY
}

// want says whether a phase or sub-phase is to run.
func (r *rig) want(name string) bool { return len(r.only) == 0 || r.only[name] }

func TestBench(t *testing.T) {
	if os.Getenv(EnvBench) != "1" {
		t.Skipf("set %s=1 to run the benchmark (make bench); it takes ~10 minutes and the whole test bed", EnvBench)
	}
	for _, tool := range []string{"wrk", "nginx", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run testdata/bench/ensure-tools.sh", tool)
		}
	}
	tb := testbed.Load(t)
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	r := &rig{
		tb: tb, ctfd: e2e.NewCTFd(t),
		run:     fmt.Sprintf("bench-%d-%s", os.Getpid()%100000, hex.EncodeToString(suffix[:])),
		noHosts: filepath.Join(t.TempDir(), "no-hosts.yml"),
		cookies: map[int]string{}, users: map[int]bool{}, only: map[string]bool{},
	}
	r.machine = machineInfo()
	t.Logf("run %s on %s", r.run, r.machine)
	// Leftovers of runs that died before their cleanup (never younger
	// than 30 minutes: another run may be going on).
	for _, h := range tb.Hosts {
		testbed.SweepStale(t, h, "rd-bench-", 30*time.Minute)
		testbed.SweepStale(t, h, "bench-floor-", 30*time.Minute)
	}

	phases := []struct {
		name string
		sec  []int
		fn   func(*testing.T)
	}{
		{"ssh", []int{secSSH}, r.benchSSH},
		{"time-to-desktop", []int{secDesktop}, r.benchTimeToDesktop},
		{"proxy-and-herd", []int{secProxy, secWSThroughput, secHerd}, r.benchTiny},
		{"warm", []int{secHerd}, r.benchWarm},
		{"footprint", []int{secFootprint}, r.benchFootprint},
		{"abuse", []int{secAbuse}, r.benchAbuse},
	}
	only := r.only
	for _, name := range strings.Split(os.Getenv(EnvOnly), ",") {
		if name = strings.TrimSpace(name); name != "" {
			only[name] = true
		}
	}
	start := time.Now()
	for _, p := range phases {
		if len(only) > 0 && !only[p.name] && !(p.name == "proxy-and-herd" && (only["proxy"] || only["herd"])) {
			continue
		}
		t0 := time.Now()
		ok := t.Run(p.name, p.fn)
		t.Logf("phase %s: %s (ok=%v)", p.name, time.Since(t0).Round(time.Second), ok)
		if !ok {
			for _, s := range p.sec {
				r.add(s, Row{Figure: sectionNames[s], Ratio: "not measured", Verdict: "**FAILED**", Context: "phase " + p.name + " failed: see the test log"})
			}
		}
	}
	out := r.render(time.Since(start))
	fmt.Println()
	fmt.Println(out)
	if root, err := testbed.RepoRoot(); err == nil {
		dir := filepath.Join(root, "out")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			path := filepath.Join(dir, "bench.md")
			if err := os.WriteFile(path, []byte(out), 0o644); err == nil {
				t.Logf("table written to %s", path)
			}
		}
	}
}

func (r *rig) add(sec int, row Row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows[sec] = append(r.rows[sec], row)
}

func (r *rig) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *rig) render(took time.Duration) string {
	var tbl Table
	for s := range numSections {
		tbl.Rows = append(tbl.Rows, r.rows[s]...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Benchmark run %s, %s; took %s.\n\n", r.run, time.Now().UTC().Format(time.RFC3339), took.Round(time.Second))
	fmt.Fprintf(&b, "Machine: %s\n\n", r.machine)
	fmt.Fprintf(&b, "Code: %s\n\n", codeInfo())
	b.WriteString(tbl.Markdown())
	if len(r.notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// machineInfo is nproc, memory, kernel and Go version.
func machineInfo() string {
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("nproc %d (%s), memory %s, kernel %s, %s %s/%s",
		runtime.NumCPU(), cpu, mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// user makes sure the stand-in has the CTFd user id and returns its cookie.
func (r *rig) cookie(id int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.cookies[id]; ok {
		return c
	}
	if id != e2e.AdminUserID && !r.users[id] {
		r.ctfd.AddUser(e2e.User{ID: id, Name: fmt.Sprintf("player%d", id), Email: fmt.Sprintf("player%d@example.com", id), Verified: true})
		r.users[id] = true
	}
	c := r.ctfd.Login(id)
	r.cookies[id] = c
	return c
}

// caddyConf is what differs between the benchmark's Caddy instances.
type caddyConf struct {
	image    string // docker_image of the test bed's hosts
	policy   string // shutdown_policy; default destroy
	extraApp string // more lines for the global remote_desktop block
}

// startCaddy runs the real binary with the module on the test bed's three
// hosts, identity from the CTFd stand-in (cache_ttl 10m: warm for the
// whole phase once each user made one request), its own instance label,
// and a /bench-noop route (Caddy's static respond, the baseline of the CPU
// figure). At the end of the test it is stopped gracefully (shutdown_policy
// destroy removes its containers), whatever is left of its instance is
// removed, and its log is kept in out/bench-logs.
func (r *rig) startCaddy(t *testing.T, cc caddyConf, dataDir string) (*e2e.Caddy, string) {
	t.Helper()
	r.mu.Lock()
	r.caddySeq++
	instance := fmt.Sprintf("%s-%d", r.run, r.caddySeq)
	r.mu.Unlock()
	sys := e2e.NewSystem(t, r.tb, r.ctfd, instance)
	if root, err := testbed.RepoRoot(); err == nil {
		sys.KeepLog = filepath.Join(root, "out", "bench-logs", instance+".log")
	}
	return sys.Start(r.caddyfile(cc, sys), dataDir), instance
}

func (r *rig) caddyfile(cc caddyConf, sys *e2e.System) string {
	if cc.policy == "" {
		cc.policy = "destroy"
	}
	c := sys.Caddyfile()
	c.HostsFile = r.noHosts
	c.Image = cc.image
	c.HostLines = []string{"max_sessions -1"} // no session cap: the herd puts about 67 sessions on each host
	c.App = []string{"shutdown_policy " + cc.policy, cc.extraApp}
	c.Identity = e2e.CTFdIdentity(r.ctfd, "10m", "")
	c.Respond = []string{"respond /bench-noop 200", `respond "ctfd itself" 200`}
	return c.String()
}

// removeInstance force-removes every container of the instance on every
// host and says how many there were.
func (r *rig) removeInstance(t *testing.T, instance string) int {
	return e2e.RemoveInstance(t, r.tb.Hosts, instance)
}

// countInstance counts the instance's containers on every host.
func (r *rig) countInstance(instance string) (int, error) {
	return e2e.CountContainers(r.tb.Hosts, instance, true, nil)
}

// api talks to the module as the stand-in's users.
type api struct {
	r      *rig
	base   string // http://127.0.0.1:port
	client *http.Client
}

func (r *rig) api(c *e2e.Caddy) *api {
	return &api{r: r, base: c.URL, client: NewHTTPClient(512, 60*time.Second)}
}

// do sends a request as user (0: anonymous) and returns the status and body.
func (a *api) do(ctx context.Context, user int, method, path, body string) (int, []byte, error) {
	cookie := ""
	if user != 0 {
		cookie = a.r.cookie(user)
	}
	req, err := e2e.APIRequest(ctx, a.base, cookie, method, path, body, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// get decodes data of a JSON answer into out.
func (a *api) json(ctx context.Context, user int, method, path, body string, out any) (int, error) {
	code, b, err := a.do(ctx, user, method, path, body)
	if err != nil {
		return code, err
	}
	var env struct {
		Success bool            `json:"success"`
		Data    json.RawMessage `json:"data"`
		Error   *struct {
			Code, Message string
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return code, fmt.Errorf("%s %s: %d, not JSON: %.200q", method, path, code, b)
	}
	if !env.Success {
		msg := string(b)
		if env.Error != nil {
			msg = env.Error.Code + ": " + env.Error.Message
		}
		return code, fmt.Errorf("%s %s: %d %s", method, path, code, msg)
	}
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			return code, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return code, nil
}

type stage struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

type stages []stage

// at is when the session first entered st (zero if never).
func (s stages) at(st string) time.Time {
	for _, x := range s {
		if x.State == st {
			return x.At
		}
	}
	return time.Time{}
}

type creationStatus struct {
	Active bool   `json:"active"`
	State  string `json:"state"`
	Stages stages `json:"stages"`
	Error  string `json:"error"`
}

type sessionView struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	State  string `json:"state"`
	Host   string `json:"host"`
	Stages stages `json:"stages"`
	Error  string `json:"error"`
}

func (a *api) create(ctx context.Context, user int) error {
	code, err := a.json(ctx, user, http.MethodPost, "/remote-desktop/api/create", "{}", nil)
	if err == nil && code != http.StatusAccepted {
		err = fmt.Errorf("create for %d: %d, want 202 (a session already existed?)", user, code)
	}
	return err
}

func (a *api) destroy(ctx context.Context, user int) error {
	_, err := a.json(ctx, user, http.MethodPost, "/remote-desktop/api/destroy", "{}", nil)
	return err
}

func (a *api) creationStatus(ctx context.Context, user int) (creationStatus, error) {
	var cs creationStatus
	_, err := a.json(ctx, user, http.MethodGet, "/remote-desktop/api/creation-status", "", &cs)
	return cs, err
}

// waitReady polls creation-status every `every` until the session is
// ready; it returns the time the poll that saw it ready came back.
func (a *api) waitReady(ctx context.Context, user int, every time.Duration) (time.Time, creationStatus, error) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		cs, err := a.creationStatus(ctx, user)
		if err != nil {
			return time.Time{}, cs, err
		}
		switch cs.State {
		case "ready":
			return time.Now(), cs, nil
		case "failed", "destroyed", "expired":
			return time.Time{}, cs, fmt.Errorf("session of %d ended %s: %s", user, cs.State, cs.Error)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, cs, fmt.Errorf("session of %d not ready (state %s): %w", user, cs.State, ctx.Err())
		case <-tick.C:
		}
	}
}

// target is the session's noVNC address, from the seed's auth-check.
func (a *api) target(ctx context.Context, user int) (string, error) {
	req, err := e2e.APIRequest(ctx, a.base, a.r.cookie(user), http.MethodGet, "/remote-desktop/api/auth-check", "",
		map[string]string{"X-User-ID": fmt.Sprint(user)})
	if err != nil {
		return "", err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	host, port := resp.Header.Get("X-VNC-Host"), resp.Header.Get("X-VNC-Port")
	if resp.StatusCode != http.StatusOK || host == "" || port == "" {
		return "", fmt.Errorf("auth-check for %d: %s, X-VNC-Host %q X-VNC-Port %q", user, resp.Status, host, port)
	}
	addr := host + ":" + port
	return addr, checkAllowedAddr(addr)
}

// httpGetOK fetches url once with the headers and checks for 200 and a
// body containing want.
func httpGetOK(ctx context.Context, client *http.Client, url string, headers []string, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(want)) {
		return fmt.Errorf("GET %s: %s %.200q (want 200 with %q)", url, resp.Status, b, want)
	}
	return nil
}

// codeInfo names the commit the run measured and the Caddy binary used.
func codeInfo() string {
	head := "?"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		head = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--", "module", "cmd", "go.mod").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		head += " (work tree differs under module/, cmd/ or go.mod)"
	}
	bin := os.Getenv(e2e.EnvCaddyBin)
	if bin == "" {
		return "commit " + head + ", Caddy built by the test from ./cmd/caddy"
	}
	built := "?"
	if fi, err := os.Stat(bin); err == nil {
		built = fi.ModTime().UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("commit %s, Caddy binary %s built %s", head, bin, built)
}
