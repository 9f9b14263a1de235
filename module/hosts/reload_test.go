package hosts

import (
	"fmt"
	"sync"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
)

// A reload replaces a kept host's settings while sessions read them without
// the orchestrator's lock: every read is one whole config, never a mix of
// two, and -race sees no data race.
func TestReloadWhileSessionsReadConfig(t *testing.T) {
	o := New(events.New(10, nil), nil)
	gen := func(i int) *Host {
		return NewHost(config.Host{Hostname: "h1", PubHostname: fmt.Sprintf("pub%d", i), MaxSessions: i + 1}, &LocalEngine{}, "")
	}
	o.SetHosts([]*Host{gen(0)})
	h, _ := o.Get("h1")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the reloads
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			o.SetHosts([]*Host{gen(i)})
		}
	}()
	for i := 0; i < 5000; i++ { // a session's reads, as in session/create.go
		c := h.Config()
		if want := fmt.Sprintf("pub%d", c.MaxSessions-1); c.PubHostname != want || h.Name() != "h1" {
			t.Fatalf("read a mixed config: %+v", c)
		}
	}
	close(stop)
	wg.Wait()
	if h.Config().MaxSessions == 1 {
		t.Fatal("no reload was applied to the kept host")
	}
	if hs := o.Hosts(); len(hs) != 1 || hs[0] != h {
		t.Fatal("the reload did not keep the host")
	}
}
