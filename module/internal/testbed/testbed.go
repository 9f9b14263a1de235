// Package testbed gives integration tests the real test bed: the Docker hosts
// (containers rdtb-host-N running sshd and dockerd) that
// testdata/testbed/testbed.sh brings up, described by its testbed.json.
//
// Load skips the calling test when there is no test bed, loudly, unless
// RD_TESTBED_REQUIRED=1, in which case it fails it: a run that must exercise
// the real hosts can never pass by skipping them.
package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Environment variables read by Load.
const (
	// EnvPath overrides where testbed.json is read from.
	EnvPath = "RD_TESTBED"
	// EnvRequired=1 turns a missing test bed from a skip into a failure.
	EnvRequired = "RD_TESTBED_REQUIRED"
)

// defaultPath is testbed.json relative to the repository root.
const defaultPath = "testdata/testbed/state/testbed.json"

// allowed are the only networks tests may send traffic to.
var allowed = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("172.30.77.0/24"),
}

// Host is one Docker host of the test bed.
type Host struct {
	Name    string `json:"name"` // container name on this machine, rdtb-host-N
	IP      string `json:"ip"`
	User    string `json:"user"`
	SSHPort int    `json:"ssh_port"`
	// Engine is the Docker Engine version the host runs ("20.10",
	// "29.8.1"); "" in a bed brought up before testbed.sh recorded it.
	Engine string `json:"engine"`
}

// EngineMajor is the major version of the host's Docker Engine (20, 29);
// 0 when the bed did not record it.
func (h Host) EngineMajor() int {
	major, _, _ := strings.Cut(h.Engine, ".")
	n, _ := strconv.Atoi(major)
	return n
}

// Addr is the host's SSH address, ip:port.
func (h Host) Addr() string {
	port := h.SSHPort
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(h.IP, strconv.Itoa(port))
}

// Testbed is the content of testbed.json.
type Testbed struct {
	Hosts        []Host `json:"hosts"`
	Network      string `json:"network"`
	Subnet       string `json:"subnet"`
	SSHKey       string `json:"ssh_key"`     // private key file of the client
	KnownHosts   string `json:"known_hosts"` // holds every host key of every host
	HostsFile    string `json:"hosts_file"`  // a hosts.yml for the test bed
	DesktopImage string `json:"desktop_image"`
	TinyImage    string `json:"tiny_image"`
	EvilImage    string `json:"evil_image"` // a malicious desktop (testdata/images/evil)

	Path string `json:"-"` // where it was read from
}

// Load reads the test bed's description; see the package doc for when it
// skips or fails the test instead.
func Load(t testing.TB) *Testbed {
	t.Helper()
	path := os.Getenv(EnvPath)
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Fatalf("testbed: %v", err)
		}
		path = filepath.Join(root, defaultPath)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		msg := fmt.Sprintf("\n*** NO TEST BED: %s does not exist. Integration test NOT RUN. ***\n"+
			"*** Bring it up with testdata/testbed/testbed.sh up; set %s=1 to make this a failure. ***", path, EnvRequired)
		if os.Getenv(EnvRequired) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatalf("testbed: read %s: %v", path, err)
	}
	var tb Testbed
	if err := json.Unmarshal(data, &tb); err != nil {
		t.Fatalf("testbed: parse %s: %v", path, err)
	}
	tb.Path = path
	if tb.EvilImage == "" { // a bed brought up before rd-evil existed
		tb.EvilImage = "rd-evil:latest"
	}
	if len(tb.Hosts) == 0 {
		t.Fatalf("testbed: %s lists no hosts", path)
	}
	for _, h := range tb.Hosts {
		ip, err := netip.ParseAddr(h.IP)
		if err != nil || !isAllowed(ip) {
			t.Fatalf("testbed: host %s has address %q, outside %v: refusing to send traffic there", h.Name, h.IP, allowed)
		}
	}
	return &tb
}

func isAllowed(ip netip.Addr) bool {
	for _, p := range allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// RepoRoot walks up from the working directory (a test's package directory)
// to the directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Host returns the i-th host (0-based), failing the test if there is none.
func (tb *Testbed) Host(t testing.TB, i int) Host {
	t.Helper()
	if i >= len(tb.Hosts) {
		t.Fatalf("testbed: want host #%d, the test bed has %d", i+1, len(tb.Hosts))
	}
	return tb.Hosts[i]
}

// Engine29Host returns the first host running Docker Engine 29 or newer
// (testbed.sh makes rdtb-host-3 one). Without one it skips the test, loudly,
// or fails it when RD_TESTBED_REQUIRED=1.
func (tb *Testbed) Engine29Host(t testing.TB) Host {
	t.Helper()
	for _, h := range tb.Hosts {
		if h.EngineMajor() >= 29 {
			return h
		}
	}
	msg := fmt.Sprintf("\n*** NO DOCKER ENGINE 29 HOST in %s (engines: %s). Test NOT RUN. ***\n"+
		"*** Bring the bed up with the current testdata/testbed/testbed.sh; %s=1 makes this a failure. ***", tb.Path, tb.engines(), EnvRequired)
	if os.Getenv(EnvRequired) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return Host{}
}

func (tb *Testbed) engines() string {
	var s []string
	for _, h := range tb.Hosts {
		s = append(s, fmt.Sprintf("%s=%q", h.Name, h.Engine))
	}
	return strings.Join(s, " ")
}

// Signer returns the client key.
func (tb *Testbed) Signer(t testing.TB) ssh.Signer {
	t.Helper()
	pem, err := os.ReadFile(tb.SSHKey)
	if err != nil {
		t.Fatalf("testbed: read client key: %v", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("testbed: parse client key %s: %v", tb.SSHKey, err)
	}
	return s
}

// Auth returns the authentication for the test bed's hosts.
func (tb *Testbed) Auth(t testing.TB) []ssh.AuthMethod {
	t.Helper()
	return []ssh.AuthMethod{ssh.PublicKeys(tb.Signer(t))}
}

// Exec runs `docker exec HOST args...` on this machine (not over SSH) and
// returns its combined output, failing the test if it fails.
func Exec(t testing.TB, host Host, args ...string) string {
	t.Helper()
	out, err := TryExec(host, args...)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return out
}

// TryExec is Exec that returns the error instead of failing the test.
func TryExec(host Host, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", host.Name}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker exec %s %s: %w\n%s", host.Name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// DumpOnFailure registers a cleanup that, if the test failed, logs the
// container's inspect output and last log lines from inside host.
func DumpOnFailure(t testing.TB, host Host, container string) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out, _ := TryExec(host, "docker", "container", "inspect", "--format", "{{json .State}} {{json .NetworkSettings.Ports}}", container)
		t.Logf("container %s on %s: %s", container, host.Name, out)
		out, _ = TryExec(host, "docker", "logs", "--tail", "50", container)
		t.Logf("logs of %s:\n%s", container, out)
	})
}

// SweepStale removes, on host, the containers and networks whose names start
// with prefix and that are older than age: leftovers of runs that died
// before their cleanup (a host that went away mid-test). The age spares
// resources of runs still going on.
func SweepStale(t testing.TB, host Host, prefix string, age time.Duration) {
	t.Helper()
	for _, kind := range []string{"container", "network"} {
		list := []string{"docker", "container", "ls", "-a"}
		if kind == "network" {
			list = []string{"docker", "network", "ls"}
		}
		out, err := TryExec(host, append(list, "--filter", "name=^"+prefix, "--format", "{{.ID}}|{{.CreatedAt}}")...)
		if err != nil {
			t.Logf("testbed: list stale %ss: %v", kind, err)
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			id, created, ok := strings.Cut(line, "|")
			if !ok {
				continue
			}
			when, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", created)
			if err != nil || time.Since(when) < age {
				continue
			}
			rm := []string{"docker", "container", "rm", "-f", id}
			if kind == "network" {
				rm = []string{"docker", "network", "rm", id}
			}
			if _, err := TryExec(host, rm...); err != nil {
				t.Logf("testbed: remove stale %s %s: %v", kind, id, err)
			} else {
				t.Logf("testbed: removed stale %s %s (created %s)", kind, id, created)
			}
		}
	}
}
