package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// EnvCaddyBin names the Caddy binary StartCaddy runs (`make test` sets it to
// the repository's ./caddy). Unset, StartCaddy builds ./cmd/caddy once per
// test process.
const EnvCaddyBin = "RD_CADDY_BIN"

// How long Caddy gets to come up, and to go down on SIGTERM.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
	logTailLines = 80
)

// CaddyOptions says what StartCaddy runs.
type CaddyOptions struct {
	// Caddyfile is the configuration. These placeholders are replaced
	// before it is written to DataDir/Caddyfile:
	//
	//	{{ADMIN}}  the admin endpoint, 127.0.0.1:<free port>
	//	{{PORT}}   a free port on 127.0.0.1 for an HTTP site
	//	{{PORT2}}  another one
	//
	// The admin endpoint is on {{ADMIN}}'s address even when the Caddyfile
	// does not say so (CADDY_ADMIN is set).
	Caddyfile string
	// Env is added to Caddy's environment (and to `caddy reload`'s, which
	// adapts the Caddyfile and so expands {$VAR} in it), after the defaults:
	// PATH, TMPDIR, and HOME, XDG_DATA_HOME and XDG_CONFIG_HOME inside
	// DataDir. Nothing else of the test's environment is passed on.
	Env []string
	// DataDir holds the Caddyfile, the log and Caddy's storage; pass the same
	// directory again to keep the storage across processes. Default: a new
	// t.TempDir().
	DataDir string
}

// Caddy is a Caddy process running the real binary; see StartCaddy.
type Caddy struct {
	Port      int    // {{PORT}}
	Port2     int    // {{PORT2}}
	URL       string // http://127.0.0.1:{{PORT}}
	AdminAddr string // {{ADMIN}}, 127.0.0.1:port
	DataDir   string

	t          testing.TB
	bin        string
	env        []string
	configPath string
	logPath    string
	waitPorts  []int // the site ports the Caddyfile uses

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
	starts  int
}

// StartCaddy runs `caddy run --config DataDir/Caddyfile --adapter caddyfile`
// as a subprocess in its own process group, its output going to
// DataDir/caddy.log, and returns once the admin endpoint answers GET /config/
// and each {{PORT}}/{{PORT2}} the Caddyfile uses accepts connections (within
// 60s, else the test fails with the log's tail). When the test ends the
// process group is killed if still running, and if the test failed the last
// 80 lines of the log are logged.
func StartCaddy(t testing.TB, opts CaddyOptions) *Caddy {
	t.Helper()
	bin := caddyBinary(t)
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	home := filepath.Join(opts.DataDir, "home")
	for _, dir := range []string{home, filepath.Join(opts.DataDir, "data"), filepath.Join(opts.DataDir, "config")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("caddy: %v", err)
		}
	}
	c := &Caddy{
		DataDir:    opts.DataDir,
		t:          t,
		bin:        bin,
		configPath: filepath.Join(opts.DataDir, "Caddyfile"),
		logPath:    filepath.Join(opts.DataDir, "caddy.log"),
	}
	t.Cleanup(c.cleanup)

	// A free port can be taken by someone else between our probe and
	// Caddy's bind: pick new ones and try again.
	for attempt := 1; ; attempt++ {
		ports := freePorts(t, 3)
		c.AdminAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		c.Port, c.Port2 = ports[1], ports[2]
		c.URL = "http://127.0.0.1:" + strconv.Itoa(c.Port)
		c.waitPorts = c.waitPorts[:0]
		if strings.Contains(opts.Caddyfile, "{{PORT}}") {
			c.waitPorts = append(c.waitPorts, c.Port)
		}
		if strings.Contains(opts.Caddyfile, "{{PORT2}}") {
			c.waitPorts = append(c.waitPorts, c.Port2)
		}
		c.env = append([]string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=" + home,
			"XDG_DATA_HOME=" + filepath.Join(opts.DataDir, "data"),
			"XDG_CONFIG_HOME=" + filepath.Join(opts.DataDir, "config"),
			"CADDY_ADMIN=" + c.AdminAddr,
		}, opts.Env...)
		if tmp := os.Getenv("TMPDIR"); tmp != "" {
			c.env = append([]string{"TMPDIR=" + tmp}, c.env...)
		}
		if err := c.writeConfig(opts.Caddyfile); err != nil {
			t.Fatalf("caddy: %v", err)
		}
		err := c.start()
		if err == nil {
			return c
		}
		if attempt < 3 && errors.Is(err, errAddrInUse) {
			t.Logf("caddy: %v; trying other ports", err)
			continue
		}
		t.Fatalf("caddy: %v\n--- last %d lines of %s ---\n%s", err, logTailLines, c.logPath, c.tail(logTailLines))
	}
}

var errAddrInUse = errors.New("address already in use")

// LogPath is the file Caddy's stdout and stderr go to (appended to by every
// start, with a marker line before each).
func (c *Caddy) LogPath() string { return c.logPath }

// Logs returns everything Caddy has written so far.
func (c *Caddy) Logs() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// PID is the process id of the last process started.
func (c *Caddy) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Running says whether the last process started has not exited yet.
func (c *Caddy) Running() bool {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Reload replaces the configuration: it writes caddyfile (placeholders
// replaced) to DataDir/Caddyfile and runs `caddy reload --config ...
// --adapter caddyfile --address <admin>`. Its output goes to the log too. A
// later Restart starts with this configuration.
func (c *Caddy) Reload(caddyfile string) error {
	if err := c.writeConfig(caddyfile); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "reload", "--config", c.configPath, "--adapter", "caddyfile", "--address", c.AdminAddr)
	cmd.Dir = c.DataDir
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	c.appendLog(fmt.Sprintf("=== e2e: caddy reload (err=%v) ===\n%s", err, out.String()))
	if err != nil {
		return fmt.Errorf("caddy reload: %w\n%s", err, out.String())
	}
	return nil
}

// Kill sends SIGKILL to Caddy's process group and waits for the process to
// exit. It does nothing if Caddy is not running.
func (c *Caddy) Kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM to Caddy's process group and waits up to 60s for the
// process to exit (then kills it), returning how it exited: nil for a
// clean exit.
func (c *Caddy) Stop() error {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if done == nil {
		return errors.New("caddy was never started")
	}
	select {
	case <-done:
	default:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		timer := time.NewTimer(stopTimeout)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			c.Kill()
			return fmt.Errorf("caddy (pid %d) did not exit within %s of SIGTERM: killed", cmd.Process.Pid, stopTimeout)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitErr
}

// Restart starts Caddy again with the same DataDir, ports, environment and
// Caddyfile (the last one written: Reload's, if any), stopping it first
// (SIGTERM) if it is still running. The test fails if it does not come up.
// Call it from the test's goroutine.
func (c *Caddy) Restart() {
	c.t.Helper()
	if c.Running() {
		if err := c.Stop(); err != nil {
			c.t.Logf("caddy: stop before restart: %v", err)
		}
	}
	if err := c.start(); err != nil {
		c.t.Fatalf("caddy: restart: %v\n--- last %d lines of %s ---\n%s", err, logTailLines, c.logPath, c.tail(logTailLines))
	}
}

// start runs the process and waits until it is ready. On failure the process
// is gone when it returns.
func (c *Caddy) start() error {
	logFile, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close() // the child holds its own copy

	c.mu.Lock()
	c.starts++
	n := c.starts
	c.mu.Unlock()
	fmt.Fprintf(logFile, "=== e2e: start #%d of %s (admin %s) at %s ===\n", n, c.bin, c.AdminAddr, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(c.bin, "run", "--config", c.configPath, "--adapter", "caddyfile")
	cmd.Dir = c.DataDir
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.bin, err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.done, c.waitErr = cmd, done, nil
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(done)
	}()

	if err := c.waitReady(done); err != nil {
		c.Kill()
		if strings.Contains(c.Logs(), "address already in use") {
			return fmt.Errorf("caddy (pid %d) did not come up: %w: %w", cmd.Process.Pid, errAddrInUse, err)
		}
		return fmt.Errorf("caddy (pid %d) did not come up: %w", cmd.Process.Pid, err)
	}
	return nil
}

func (c *Caddy) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	client := LoopbackClient(2 * time.Second)
	adminURL := "http://" + c.AdminAddr + "/config/"
	adminUp := false
	pending := append([]int(nil), c.waitPorts...)
	var last error
	for {
		select {
		case <-done:
			c.mu.Lock()
			err := c.waitErr
			c.mu.Unlock()
			return fmt.Errorf("exited early: %v", err)
		default:
		}
		if !adminUp {
			resp, err := client.Get(adminURL)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					adminUp = true
				} else {
					err = fmt.Errorf("GET %s: %s", adminURL, resp.Status)
				}
			}
			last = err
		}
		for adminUp && len(pending) > 0 {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pending[0]))
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				last = fmt.Errorf("site port: %w", err)
				break
			}
			conn.Close()
			pending = pending[1:]
		}
		if adminUp && len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %v", startTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanup kills Caddy if it is still running and, if the test failed, logs
// the tail of its log.
func (c *Caddy) cleanup() {
	c.Kill()
	if c.t.Failed() {
		c.t.Logf("caddy: last %d lines of %s:\n%s", logTailLines, c.logPath, c.tail(logTailLines))
	}
}

func (c *Caddy) writeConfig(caddyfile string) error {
	text := strings.NewReplacer(
		"{{ADMIN}}", c.AdminAddr,
		"{{PORT}}", strconv.Itoa(c.Port),
		"{{PORT2}}", strconv.Itoa(c.Port2),
	).Replace(caddyfile)
	if err := os.WriteFile(c.configPath, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write Caddyfile: %w", err)
	}
	return nil
}

func (c *Caddy) appendLog(s string) {
	f, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(s)
}

func (c *Caddy) tail(n int) string {
	lines := strings.Split(strings.TrimRight(c.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("caddy: find a free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// The binary, found or built once per test process.
var caddyBuild struct {
	once sync.Once
	path string
	err  error
}

// caddyBinary is $RD_CADDY_BIN, or ./cmd/caddy built once per test process
// into a directory of the system's temporary directory named for the
// repository (so repeated runs overwrite one binary rather than pile up).
func caddyBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvCaddyBin); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("caddy: %s=%q: %v", EnvCaddyBin, p, err)
		}
		if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Fatalf("caddy: %s=%q is not an executable file (%v)", EnvCaddyBin, p, err)
		}
		return abs
	}
	caddyBuild.once.Do(func() {
		caddyBuild.path, caddyBuild.err = buildCaddy(t)
	})
	if caddyBuild.err != nil {
		t.Fatalf("caddy: %s is unset and building ./cmd/caddy failed: %v", EnvCaddyBin, caddyBuild.err)
	}
	return caddyBuild.path
}

func buildCaddy(t testing.TB) (string, error) {
	root, err := testbed.RepoRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		return "", fmt.Errorf("find the go command: %w", err)
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "rd-e2e-caddy-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(dir, "caddy")
	tmp := filepath.Join(dir, fmt.Sprintf("caddy.%d.tmp", os.Getpid()))
	t.Logf("caddy: %s is unset: building ./cmd/caddy into %s (the first build takes minutes)", EnvCaddyBin, final)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, "./cmd/caddy")
	cmd.Dir = root
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build -o %s ./cmd/caddy (in %s): %w\n%s", tmp, root, err, out)
	}
	// Atomic: another test process may be running the previous binary.
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", err
	}
	t.Logf("caddy: built %s in %s", final, time.Since(start).Round(time.Second))
	return final, nil
}

// Do sends one request (to a loopback address only; redirects are not
// followed) and returns the response with its body read and closed, failing
// the test if it cannot be sent. headers may hold "Host" too.
func Do(t testing.TB, method, url string, headers map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("Do %s %s: %v", method, url, err)
	}
	setHeaders(req, headers)
	resp, err := LoopbackClient(RequestTimeout).Do(req)
	if err != nil {
		t.Fatalf("Do %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("Do %s %s: read body: %v", method, url, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, b
}

// LoopbackClient is an HTTP client that only dials loopback addresses,
// ignores proxy settings, does not keep connections, and does not follow
// redirects.
func LoopbackClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("e2e: refusing to dial %s: tests only talk to loopback addresses", address)
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       dialer.DialContext,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
