package session_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

func ints(n int) *int { return &n }

// The whole life of one session with short timers: ready, the timer starts
// only at the first poll, two extensions, a third refused, expiry destroys
// the container on the host.
func TestLifecycleWithShortTimers(t *testing.T) {
	r := newRig(t, rigConfig{opts: session.Options{
		Session:        config.SessionDefaults{InitialDuration: 3, ExtensionDuration: 2, MaxExtensions: ints(2)},
		UnclaimedGrace: time.Minute,
	}})
	if _, created, err := r.m.Create("7", "alice"); err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
	v := r.waitState("7", session.Ready, 60*time.Second)
	stages := []session.State{}
	for _, st := range v.Stages {
		stages = append(stages, st.State)
	}
	if !slices.Equal(stages, []session.State{session.Queued, session.Scheduling, session.Starting, session.WaitingForDesktop, session.Ready}) {
		t.Errorf("stages = %v", stages)
	}
	if len(v.Password) < 16 {
		t.Errorf("password has %d characters, want >= 16", len(v.Password))
	}
	if resp, err := http.Get("http://" + v.Addr() + "/vnc.html"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("desktop not answering at %s: %v", v.Addr(), err)
	}

	time.Sleep(1500 * time.Millisecond)
	if got, _ := r.m.Get("7"); !got.ExpiresAt.IsZero() {
		t.Fatal("the timer started before the first status poll")
	}
	before := time.Now()
	polled, _, err := r.m.Poll(context.Background(), "7")
	if err != nil {
		t.Fatal(err)
	}
	if d := polled.ExpiresAt.Sub(before); d < 2900*time.Millisecond || d > 3500*time.Millisecond {
		t.Fatalf("expiry is %v after the first poll, want 3s", d)
	}
	for i := 1; i <= 2; i++ {
		ext, err := r.m.Extend(context.Background(), "7", false)
		if err != nil {
			t.Fatalf("extension %d: %v", i, err)
		}
		if want := polled.ExpiresAt.Add(time.Duration(2*i) * time.Second); !ext.ExpiresAt.Equal(want) {
			t.Fatalf("after extension %d expiry = %v, want %v", i, ext.ExpiresAt, want)
		}
	}
	if _, err := r.m.Extend(context.Background(), "7", false); !errors.Is(err, session.ErrMaxExtensions) {
		t.Fatalf("third extension: %v, want ErrMaxExtensions", err)
	}
	// 3 s + 2 × 2 s after the poll, the expiry timer destroys it.
	end := r.waitState("7", session.Expired, 15*time.Second)
	if late := time.Since(polled.ExpiresAt.Add(4 * time.Second)); late > 3*time.Second {
		t.Errorf("expired %v late", late)
	}
	if end.Error == "" {
		t.Error("an expired session says nothing about why")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.containers(r.hosts.Hosts()[0])) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired session's container is still on the host")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := r.hosts.Status()[0]; st.Active != 0 {
		t.Errorf("host slot not released: active = %d", st.Active)
	}
	types := r.eventTypes("7")
	for _, want := range []string{events.SessionQueued, events.SessionCreated, events.SessionReady, events.SessionExtended, events.SessionExpired} {
		if !slices.Contains(types, want) {
			t.Errorf("events %v lack %s", types, want)
		}
	}
	for _, e := range r.events.Recent(0) { // the password is in no event
		if strings.Contains(fmt.Sprintf("%+v", e), v.Password) {
			t.Fatalf("event %d carries the VNC password", e.ID)
		}
	}
}

// 20 concurrent creates by one user make one container.
func TestOneSessionPerUser(t *testing.T) {
	r := newRig(t, rigConfig{})
	var created atomic.Int32
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, c, err := r.m.Create("42", "bob")
			if err != nil {
				t.Error(err)
				return
			}
			if c {
				created.Add(1)
			}
			ids <- s.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if created.Load() != 1 || len(seen) != 1 {
		t.Fatalf("created %d sessions with %d ids, want 1", created.Load(), len(seen))
	}
	r.waitState("42", session.Ready, 60*time.Second)
	if n := r.countByHost(); n[r.hosts.Hosts()[0].Name()] != 1 {
		t.Fatalf("containers on the host: %v, want 1", n)
	}
}

// 30 users at once over 3 hosts: all ready, spread 10/10/10.
func TestThirtyUsersSpreadEvenly(t *testing.T) {
	r := newRig(t, rigConfig{hosts: 3})
	for i := range 30 {
		go func() {
			if _, _, err := r.m.Create(fmt.Sprint(1000+i), ""); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ready := 0
		for _, v := range r.m.List() {
			if v.State == session.Ready {
				ready++
			}
		}
		if ready == 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 30 sessions ready after 3 minutes", ready)
		}
		time.Sleep(200 * time.Millisecond)
	}
	counts := r.countByHost()
	for _, h := range r.hosts.Hosts() {
		if counts[h.Name()] != 10 {
			t.Fatalf("containers per host = %v, want 10 each", counts)
		}
	}
}

// With room for 2, four requests: two start, two wait at positions 1 and 2,
// and both start in order as slots free.
func TestQueueWhenFull(t *testing.T) {
	r := newRig(t, rigConfig{maxSessions: 2})
	for _, u := range []string{"a", "b"} {
		if _, _, err := r.m.Create(u, ""); err != nil {
			t.Fatal(err)
		}
		r.waitState(u, session.Ready, 60*time.Second)
	}
	for _, u := range []string{"c", "d"} {
		if _, _, err := r.m.Create(u, ""); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for i, u := range []string{"c", "d"} {
		v, _ := r.m.Get(u)
		if v.State != session.Queued || v.QueuePosition != i+1 {
			t.Fatalf("%s: state %s position %d, want queued at %d", u, v.State, v.QueuePosition, i+1)
		}
	}
	if err := r.m.Destroy(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	r.waitState("c", session.Ready, 60*time.Second)
	if v, _ := r.m.Get("d"); v.State != session.Queued || v.QueuePosition != 1 {
		t.Fatalf("d: state %s position %d, want queued at 1", v.State, v.QueuePosition)
	}
	if err := r.m.Destroy(context.Background(), "b", ""); err != nil {
		t.Fatal(err)
	}
	r.waitState("d", session.Ready, 60*time.Second)
	if n := r.countByHost()[r.hosts.Hosts()[0].Name()]; n != 2 {
		t.Fatalf("%d containers, want 2", n)
	}
}

// A managed container of this instance that no session owns is removed
// once older than the orphan grace, and the event log says so.
func TestOrphanIsRemoved(t *testing.T) {
	r := newRig(t, rigConfig{opts: session.Options{ReaperInterval: 500 * time.Millisecond, OrphanGrace: time.Second}})
	h := r.hosts.Hosts()[0]
	var c docker.Container
	err := h.Engine.Do(context.Background(), func(ctx context.Context, d *docker.Client) error {
		var err error
		c, err = d.Run(ctx, docker.RunSpec{
			Name: "rd-orphan-" + r.instance, Image: h.Config().DockerImage, Env: []string{"VNC_PASSWORD=x"},
			Labels:      map[string]string{session.LabelManaged: "true", session.LabelInstance: r.instance, session.LabelSession: "nobody"},
			BindAddress: h.Config().BindAddress, Ports: []int{6080}, MemoryBytes: 64 << 20, PidsLimit: 64,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(r.containers(h)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("orphan %s still there", c.Name)
		}
		time.Sleep(250 * time.Millisecond)
	}
	found := false
	for _, e := range r.events.Recent(0) {
		found = found || (e.Type == events.OrphanRemoved && e.Data["container"] == c.ID[:12])
	}
	if !found {
		t.Fatal("no orphan_removed event")
	}
}

// A never-started helper container (the handler reads noVNC out of an image
// through one) left behind by a crash carries the manager's helper labels,
// so the reaper removes it as an orphan, but only once HelperMaxLife has
// passed, however short orphan_grace is: a helper at work is left alone.
func TestLeftoverHelperContainerIsReaped(t *testing.T) {
	r := newRig(t, rigConfig{opts: session.Options{ReaperInterval: 500 * time.Millisecond, OrphanGrace: time.Second}})
	h := r.hosts.Hosts()[0]
	var host testbed.Host
	for _, x := range r.tb.Hosts {
		if x.IP == h.Name() {
			host = x
		}
	}
	helper := func(name string, age time.Duration) string {
		labels := r.m.HelperLabels()
		labels[session.LabelCreated] = time.Now().Add(-age).UTC().Format(time.RFC3339)
		args := []string{"docker", "create", "--name", name + "-" + r.instance, "--network", "none", "--entrypoint", "/nonexistent"}
		for k, v := range labels {
			args = append(args, "--label", k+"="+v)
		}
		args = append(args, "--label", "io.ctf-remote-desktop.files=novnc", h.Config().DockerImage)
		return strings.TrimSpace(testbed.Exec(t, host, args...))[:12]
	}
	working := helper("rd-helper-working", 0)
	leftover := helper("rd-helper-leftover", session.HelperMaxLife+time.Minute)
	ids := func() (out []string) {
		for _, c := range r.containers(h) {
			out = append(out, c.ID[:12])
		}
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	for slices.Contains(ids(), leftover) {
		if time.Now().After(deadline) {
			t.Fatalf("leftover helper container %s still there", leftover)
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // several more reaper passes, past orphan_grace
	if !slices.Contains(ids(), working) {
		t.Fatalf("the reaper removed helper container %s while it may be at work (younger than HelperMaxLife)", working)
	}
}

// A restarted manager adopts its sessions from the store: same host, port
// and expiry; the containers are untouched; nothing is an orphan.
func TestRestartAdoptsSessions(t *testing.T) {
	r := newRig(t, rigConfig{hosts: 2, opts: session.Options{ReaperInterval: 500 * time.Millisecond, OrphanGrace: time.Second}})
	before := map[string]session.View{}
	for _, u := range []string{"u1", "u2", "u3"} {
		if _, _, err := r.m.Create(u, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		r.waitState(u, session.Ready, 60*time.Second)
		v, _, err := r.m.Poll(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		before[u] = v
	}
	r.restart()
	time.Sleep(3 * time.Second) // several reaper passes
	for u, b := range before {
		v, ok := r.m.Get(u)
		if !ok || v.State != session.Ready || v.ID != b.ID || v.Host != b.Host || v.Port != b.Port ||
			!v.ExpiresAt.Equal(b.ExpiresAt) || v.ContainerID != b.ContainerID {
			t.Fatalf("%s after restart: %+v (ok=%v), before: %+v", u, v.Session, ok, b.Session)
		}
	}
	total := 0
	for _, n := range r.countByHost() {
		total += n
	}
	if total != 3 {
		t.Fatalf("%d containers after restart, want 3", total)
	}
	slots := 0
	for _, st := range r.hosts.Status() {
		slots += st.Active
	}
	if slots != 3 {
		t.Fatalf("%d host slots counted after restart, want 3", slots)
	}
}
