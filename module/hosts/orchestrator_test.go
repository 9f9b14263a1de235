package hosts

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
)

// healthyHosts makes an orchestrator whose hosts are all healthy (set
// directly: the checks themselves run against the real test bed in the
// session and system tests).
func healthyHosts(t *testing.T, max ...int) (*Orchestrator, *events.Log) {
	t.Helper()
	ev := events.New(100, nil)
	o := New(ev, nil)
	var list []*Host
	for i, m := range max {
		list = append(list, NewHost(config.Host{Hostname: fmt.Sprintf("h%d", i+1), MaxSessions: m}, &LocalEngine{}, ""))
	}
	o.SetHosts(list)
	for _, h := range o.Hosts() {
		o.setHealth(h.Name(), Healthy, "", nil)
	}
	return o, ev
}

func TestAcquireLeastLoadedWithDeterministicTies(t *testing.T) {
	o, _ := healthyHosts(t, 0, 0, 0)
	var got []string
	for range 6 {
		h, err := o.Acquire(nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name())
	}
	if fmt.Sprint(got) != "[h1 h2 h3 h1 h2 h3]" {
		t.Fatalf("placement %v", got)
	}
	o.Release("h2")
	o.Release("h2")
	if h, _ := o.Acquire(nil); h.Name() != "h2" {
		t.Fatalf("after h2 freed two slots, placed on %s", h.Name())
	}
	if h, _ := o.Acquire(map[string]bool{"h2": true}); h.Name() != "h1" {
		t.Fatalf("excluding h2, placed on %s", h.Name())
	}
}

func TestCapacityDrainAndHealth(t *testing.T) {
	o, ev := healthyHosts(t, 1, 1)
	a, _ := o.Acquire(nil)
	b, _ := o.Acquire(nil)
	if a.Name() == b.Name() {
		t.Fatal("two sessions on a host with max_sessions 1")
	}
	if _, err := o.Acquire(nil); !errors.Is(err, ErrAtCapacity) {
		t.Fatalf("full: %v, want ErrAtCapacity", err)
	}
	freed := o.Freed()
	o.Release("h1")
	select {
	case <-freed:
	default:
		t.Fatal("Release did not signal Freed")
	}
	if err := o.SetDrained("h1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Acquire(nil); !errors.Is(err, ErrAtCapacity) {
		t.Fatalf("h1 drained, h2 full: %v, want ErrAtCapacity", err)
	}
	o.MarkUnhealthy("h2", "boom")
	if _, err := o.Acquire(nil); !errors.Is(err, ErrNoHealthyHost) {
		t.Fatalf("h1 drained, h2 unhealthy: %v, want ErrNoHealthyHost", err)
	}
	_ = o.SetDrained("h1", false)
	if h, err := o.Acquire(nil); err != nil || h.Name() != "h1" {
		t.Fatalf("undrained: %v %v", h, err)
	}
	if err := o.SetDrained("nope", true); !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("unknown host: %v", err)
	}
	var types []string
	for _, e := range ev.Recent(0) {
		types = append(types, e.Type)
	}
	want := "[host_drained host_unhealthy host_undrained]"
	if fmt.Sprint(types) != want {
		t.Fatalf("events %v, want %s", types, want)
	}
	o.setHealth("h2", Healthy, "", nil)
	if last := ev.Recent(1)[0]; last.Type != events.HostRecovered || last.Host != "h2" {
		t.Fatalf("recovery event %+v", last)
	}
}

// However many goroutines acquire at once, no host goes past its limit and
// every slot is counted once.
func TestAcquireIsRaceFree(t *testing.T) {
	o, _ := healthyHosts(t, 10, 10, 10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	per := map[string]int{}
	full := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := o.Acquire(nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				full++
				return
			}
			per[h.Name()]++
		}()
	}
	wg.Wait()
	if per["h1"] != 10 || per["h2"] != 10 || per["h3"] != 10 || full != 20 {
		t.Fatalf("placed %v, refused %d", per, full)
	}
	for _, st := range o.Status() {
		if st.Active != 10 {
			t.Fatalf("%s counts %d", st.Name, st.Active)
		}
	}
}

// A reload that keeps a host's connection keeps its engine, count and
// drain; a changed connection gets the new engine but keeps the count.
func TestSetHostsKeepsState(t *testing.T) {
	o, _ := healthyHosts(t, 0, 0)
	o.Acquire(nil)
	_ = o.SetDrained("h1", true)
	oldEngine := o.Hosts()[0].Engine
	same := NewHost(config.Host{Hostname: "h1", MaxSessions: 5}, &LocalEngine{}, "")
	changed := NewHost(config.Host{Hostname: "h2"}, &LocalEngine{}, "other")
	added := NewHost(config.Host{Hostname: "h3"}, &LocalEngine{}, "")
	dropped := o.SetHosts([]*Host{same, changed, added})
	hs := o.Hosts()
	if hs[0].Engine != oldEngine || hs[0].Config().MaxSessions != 5 {
		t.Fatal("h1 lost its engine or did not take the new max_sessions")
	}
	st := o.Status()
	if st[0].Active != 1 || !st[0].Drained || st[0].Health != Healthy {
		t.Fatalf("h1 state lost: %+v", st[0])
	}
	if hs[1] != changed || st[2].Health != Unknown {
		t.Fatalf("h2/h3: %+v", st)
	}
	if len(dropped) != 2 { // the unused new h1 engine, the old h2
		t.Fatalf("dropped %d hosts, want 2", len(dropped))
	}
}
