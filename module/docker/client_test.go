package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDaemon serves canned Engine API answers on a unix socket and records
// the requests. It checks only what the client sends; the real daemon is
// exercised by the integration tests.
type fakeDaemon struct {
	mu       sync.Mutex
	requests []string // "METHOD /path?query"
	bodies   map[string]string
	closes   []bool // whether each request asked to close the connection
	routes   map[string]func(w http.ResponseWriter, r *http.Request)
}

func startFakeDaemon(t *testing.T) (*fakeDaemon, *Client) {
	t.Helper()
	d := &fakeDaemon{bodies: map[string]string{}, routes: map[string]func(http.ResponseWriter, *http.Request){}}
	dir, err := os.MkdirTemp("", "docker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	// The tests of each endpoint speak 1.41; version_test.go negotiates.
	return d, New(UnixDialer(sock)).WithVersion("1.41")
}

func (d *fakeDaemon) handle(route string, status int, body string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.routes[route] = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func (d *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	route := r.Method + " " + r.URL.Path
	d.mu.Lock()
	d.requests = append(d.requests, route+"?"+r.URL.RawQuery)
	d.bodies[route] = string(data)
	d.closes = append(d.closes, r.Close)
	h := d.routes[route]
	d.mu.Unlock()
	if h == nil {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, `{"message":"fake daemon: no route %s"}`, route)
		return
	}
	h(w, r)
}

func (d *fakeDaemon) Requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.requests...)
}

const v = "/v1.41"

func TestPingAndAPIError(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("GET "+v+"/_ping", 200, "OK")
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// One connection per request, closed by the daemon once it has answered.
	if d.closes[0] != true {
		t.Fatal("request did not say Connection: close")
	}
	d.handle("GET "+v+"/_ping", 500, `{"message":"daemon is sad"}`)
	err := c.Ping(context.Background())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 500 || apiErr.Message != "daemon is sad" {
		t.Fatalf("Ping = %v; want APIError 500 with the daemon's message", err)
	}
}

func TestImagePresent(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("GET "+v+"/images/rd-desktop:latest/json", 200, `{"Id":"sha256:1"}`)
	d.handle("GET "+v+"/images/registry.example/team/img:1/json", 200, `{"Id":"sha256:2"}`)
	d.handle("GET "+v+"/images/nope:latest/json", 404, `{"message":"No such image: nope:latest"}`)
	for ref, want := range map[string]bool{"rd-desktop:latest": true, "registry.example/team/img:1": true, "nope:latest": false} {
		got, err := c.ImagePresent(context.Background(), ref)
		if err != nil || got != want {
			t.Errorf("ImagePresent(%s) = %v, %v; want %v", ref, got, err, want)
		}
	}
	d.handle("GET "+v+"/images/broken:latest/json", 500, `{"message":"boom"}`)
	if _, err := c.ImagePresent(context.Background(), "broken:latest"); err == nil {
		t.Error("ImagePresent on a daemon error succeeded")
	}
	if id, err := c.ImageID(context.Background(), "registry.example/team/img:1"); err != nil || id != "sha256:2" {
		t.Errorf("ImageID = %q, %v; want sha256:2", id, err)
	}
	if _, err := c.ImageID(context.Background(), "nope:latest"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ImageID of a missing image: %v, want ErrNotFound", err)
	}
	for _, r := range d.Requests() {
		if strings.Contains(r, "/images/create") {
			t.Fatalf("ImagePresent pulled: %s", r)
		}
	}
}

func TestListFiltersByLabel(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("GET "+v+"/containers/json", 200, `[
		{"Id":"b","Names":["/rd-b"],"Image":"rd-tiny:latest","Labels":{"rd":"1"},"State":"exited","Created":1700000000,"Ports":[]},
		{"Id":"a","Names":["/rd-a"],"Image":"rd-tiny:latest","Labels":{"rd":"1"},"State":"running","Created":1700000000,
		 "Ports":[{"IP":"::","PrivatePort":6080,"PublicPort":32769,"Type":"tcp"},{"IP":"0.0.0.0","PrivatePort":6080,"PublicPort":32768,"Type":"tcp"},{"PrivatePort":5900,"Type":"tcp"}]}]`)
	cs, err := c.List(context.Background(), map[string]string{"rd": "1", "owner": ""}, true)
	if err != nil {
		t.Fatal(err)
	}
	reqs := d.Requests()
	if len(reqs) != 1 || !strings.Contains(reqs[0], "all=1") {
		t.Fatalf("requests %v", reqs)
	}
	q := strings.SplitN(reqs[0], "?", 2)[1]
	vals, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	var filters map[string][]string
	if err := json.Unmarshal([]byte(vals.Get("filters")), &filters); err != nil {
		t.Fatalf("filters %q: %v", vals.Get("filters"), err)
	}
	if got := strings.Join(filters["label"], ","); got != "owner,rd=1" {
		t.Fatalf("label filters %q; want sorted owner,rd=1", got)
	}
	if len(cs) != 2 || cs[0].Name != "rd-a" || !cs[0].Running || cs[1].Running {
		t.Fatalf("containers %+v", cs)
	}
	if cs[0].Ports[6080] != 32768 || cs[0].HostIPs[6080] != "0.0.0.0" || len(cs[0].Ports) != 1 {
		t.Fatalf("ports %v %v; want the IPv4 binding of 6080 only", cs[0].Ports, cs[0].HostIPs)
	}
}

const inspectRunning = `{"Id":"c1","Name":"/rdtest-1","Created":"2026-01-02T03:04:05.123456789Z",
	"Config":{"Image":"rd-tiny:latest","Labels":{"rd":"1"}},
	"State":{"Status":"running","Running":true},
	"NetworkSettings":{"Ports":{"6080/tcp":[{"HostIp":"172.30.77.11","HostPort":"40001"}],"5900/tcp":null,"53/udp":[{"HostIp":"0.0.0.0","HostPort":"53"}]}}}`

func TestRunCreatesStartsInspects(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("POST "+v+"/containers/create", 201, `{"Id":"c1","Warnings":[]}`)
	d.handle("POST "+v+"/containers/c1/start", 204, "")
	d.handle("GET "+v+"/containers/c1/json", 200, inspectRunning)
	spec := RunSpec{Name: "rdtest-1", Image: "rd-tiny:latest", Env: []string{"VNC_PASSWORD=s3cret"}, BindAddress: "172.30.77.11", Ports: []int{6080}}
	ctr, err := c.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctr.ID != "c1" || ctr.Name != "rdtest-1" || ctr.Image != "rd-tiny:latest" || !ctr.Running || ctr.State != "running" {
		t.Fatalf("container %+v", ctr)
	}
	if ctr.Ports[6080] != 40001 || ctr.HostIPs[6080] != "172.30.77.11" || len(ctr.Ports) != 1 {
		t.Fatalf("ports %v %v", ctr.Ports, ctr.HostIPs)
	}
	if ctr.Created.IsZero() || ctr.Labels["rd"] != "1" {
		t.Fatalf("created/labels %+v", ctr)
	}
	want := []string{"POST " + v + "/containers/create?name=rdtest-1", "POST " + v + "/containers/c1/start?", "GET " + v + "/containers/c1/json?"}
	if got := d.Requests(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("requests %v; want %v", got, want)
	}
	if body := d.bodies["POST "+v+"/containers/create"]; !strings.Contains(body, `"CapDrop":["ALL"]`) {
		t.Fatalf("create body %s", body)
	}
}

func TestRunRemovesWhatItCreatedWhenStartFails(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("POST "+v+"/containers/create", 201, `{"Id":"c1"}`)
	d.handle("POST "+v+"/containers/c1/start", 500, `{"message":"driver failed programming external connectivity"}`)
	d.handle("POST "+v+"/containers/c1/stop", 304, "")
	d.handle("DELETE "+v+"/containers/c1", 500, `{"message":"cleanup also failed"}`)
	_, err := c.Run(context.Background(), RunSpec{Name: "rdtest-1", Image: "rd-tiny:latest", Env: []string{"VNC_PASSWORD=s3cret"}})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Message, "external connectivity") {
		t.Fatalf("Run = %v; want the start error to win", err)
	}
	if !strings.Contains(err.Error(), "cleanup also failed") {
		t.Fatalf("Run = %v; want the cleanup failure mentioned", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error shows the environment: %v", err)
	}
	var deleted bool
	for _, r := range d.Requests() {
		deleted = deleted || strings.HasPrefix(r, "DELETE "+v+"/containers/c1?")
	}
	if !deleted {
		t.Fatalf("Run did not remove the container it created: %v", d.Requests())
	}
}

func TestRunReportsMissingImage(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("POST "+v+"/containers/create", 404, `{"message":"No such image: nope:latest"}`)
	_, err := c.Run(context.Background(), RunSpec{Name: "rdtest-1", Image: "nope:latest"})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Run = %v; want ErrNotFound", err)
	}
}

func TestInspectNotFound(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("GET "+v+"/containers/gone/json", 404, `{"message":"No such container: gone"}`)
	if _, err := c.Inspect(context.Background(), "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Inspect = %v; want ErrNotFound", err)
	}
}

func TestRemoveIsIdempotent(t *testing.T) {
	for name, tc := range map[string]struct {
		stop, del  int
		delBody    string
		wantErr    bool
		wantDelete bool
	}{
		"running":              {stop: 204, del: 204, wantDelete: true},
		"already stopped":      {stop: 304, del: 204, wantDelete: true},
		"gone":                 {stop: 404, del: 404},
		"removal in progress":  {stop: 204, del: 409, delBody: `{"message":"removal of container c1 is already in progress"}`, wantDelete: true},
		"vanished after stop":  {stop: 204, del: 404, wantDelete: true},
		"stop fails, rm kills": {stop: 500, del: 204, wantDelete: true},
		"other conflict":       {stop: 204, del: 409, delBody: `{"message":"something else"}`, wantErr: true, wantDelete: true},
		"daemon error":         {stop: 204, del: 500, delBody: `{"message":"boom"}`, wantErr: true, wantDelete: true},
	} {
		t.Run(name, func(t *testing.T) {
			d, c := startFakeDaemon(t)
			d.handle("POST "+v+"/containers/c1/stop", tc.stop, `{"message":"x"}`)
			d.handle("DELETE "+v+"/containers/c1", tc.del, tc.delBody)
			err := c.Remove(context.Background(), "c1", 3*time.Second)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Remove = %v; want error %v", err, tc.wantErr)
			}
			reqs := d.Requests()
			if reqs[0] != "POST "+v+"/containers/c1/stop?t=3" {
				t.Fatalf("stop request %q", reqs[0])
			}
			if deleted := len(reqs) > 1; deleted != tc.wantDelete {
				t.Fatalf("requests %v", reqs)
			} else if deleted && reqs[1] != "DELETE "+v+"/containers/c1?force=1&v=1" {
				t.Fatalf("delete request %q", reqs[1])
			}
		})
	}
}

func TestEnsureNetwork(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("GET "+v+"/networks/rd-net", 200, `{"Name":"rd-net"}`)
	if err := c.EnsureNetwork(context.Background(), "rd-net", nil); err != nil {
		t.Fatal(err)
	}
	d.handle("GET "+v+"/networks/rd-new", 404, `{"message":"network rd-new not found"}`)
	d.handle("POST "+v+"/networks/create", 201, `{"Id":"n1"}`)
	d.handle("GET "+v+"/networks", 200, `[{"Id":"n1","Name":"rd-new","Created":"2026-01-01T00:00:00.5Z"},{"Id":"n0","Name":"rd-new-other","Created":"2025-01-01T00:00:00Z"}]`)
	if err := c.EnsureNetwork(context.Background(), "rd-new", map[string]string{"com.docker.network.bridge.enable_icc": "false"}); err != nil {
		t.Fatal(err)
	}
	body := d.bodies["POST "+v+"/networks/create"]
	for _, want := range []string{`"Name":"rd-new"`, `"Driver":"bridge"`, `"CheckDuplicate":true`, `"com.docker.network.bridge.enable_icc":"false"`} {
		if !strings.Contains(body, want) {
			t.Errorf("create body %s lacks %s", body, want)
		}
	}
	for _, r := range d.Requests() {
		if strings.HasPrefix(r, "DELETE") {
			t.Fatalf("removed a network though there was one of the name: %v", d.Requests())
		}
	}
	d.handle("POST "+v+"/networks/create", 409, `{"message":"network with name rd-new already exists"}`)
	if err := c.EnsureNetwork(context.Background(), "rd-new", nil); err != nil {
		t.Fatalf("EnsureNetwork after a concurrent create: %v", err)
	}
}

// Concurrent creates of one name all succeed on Docker 20.10: every caller
// keeps the oldest and removes the rest.
func TestEnsureNetworkRemovesDuplicatesKeepingTheOldest(t *testing.T) {
	d, c := startFakeDaemon(t)
	d.handle("GET "+v+"/networks/rd-net", 400, `{"message":"network rd-net is ambiguous (3 matches found based on name)"}`)
	d.handle("GET "+v+"/networks", 200, `[
		{"Id":"n3","Name":"rd-net","Created":"2026-01-01T00:00:00.300Z"},
		{"Id":"n1","Name":"rd-net","Created":"2026-01-01T00:00:00.100Z"},
		{"Id":"n2","Name":"rd-net","Created":"2026-01-01T00:00:00.100Z"}]`)
	d.handle("DELETE "+v+"/networks/n2", 204, "")
	d.handle("DELETE "+v+"/networks/n3", 404, `{"message":"gone already"}`)
	if err := c.EnsureNetwork(context.Background(), "rd-net", nil); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, r := range d.Requests() {
		if strings.HasPrefix(r, "DELETE") {
			deleted = append(deleted, r)
		}
		if strings.HasPrefix(r, "POST") {
			t.Errorf("created a network though several exist: %s", r)
		}
	}
	if want := "DELETE " + v + "/networks/n2?|DELETE " + v + "/networks/n3?"; strings.Join(deleted, "|") != want {
		t.Fatalf("deleted %v; want n2 and n3 (n1 is the oldest, lowest ID on a tie)", deleted)
	}
}

func TestCallsAreBoundedByContext(t *testing.T) {
	d, c := startFakeDaemon(t)
	release := make(chan struct{})
	defer close(release)
	d.mu.Lock()
	d.routes["GET "+v+"/_ping"] = func(http.ResponseWriter, *http.Request) { <-release }
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Ping(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping = %v; want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Ping returned after %s", el)
	}
}
