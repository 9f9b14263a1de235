package remotedesktop

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
)

func TestIsolationOptions(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`remote_desktop {
		egress closed
		closed_ranges 203.0.113.0/24 198.51.100.7
		open_ranges 10.50.0.0/16
		isolation warn
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a)
	if want := `{"egress":"closed","closed_ranges":["203.0.113.0/24","198.51.100.7"],"open_ranges":["10.50.0.0/16"],"isolation":"warn"}`; string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	a.setDefaults()
	if err := a.Validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
	var d App
	d.setDefaults()
	if d.Egress != "open" || d.Isolation != "enforce" {
		t.Errorf("defaults egress=%q isolation=%q, want open, enforce", d.Egress, d.Isolation)
	}
	for _, c := range []struct {
		mod func(*App)
		msg string
	}{
		{func(a *App) { a.Egress = "partly" }, "neither open nor closed"},
		{func(a *App) { a.Isolation = "off" }, "neither enforce nor warn"},
		{func(a *App) { a.ClosedRanges = []string{"10.0.0.0/33"} }, "not an IPv4 range"},
		{func(a *App) { a.OpenRanges = []string{"fd00::/8"} }, "open_ranges: \"fd00::/8\" is not an IPv4 range"},
	} {
		var b App
		b.setDefaults()
		c.mod(&b)
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("err = %v, want %q", err, c.msg)
		}
	}
}

// Every configured host's address is closed to desktops and probed on its
// sshd port; loopback and names are not addresses a desktop could use.
func TestIsolationFor(t *testing.T) {
	a := &App{Egress: "open", ClosedRanges: []string{"203.0.113.0/24"}}
	a.settings.WorkspaceHosts = []config.Host{
		{Hostname: "172.30.77.11", PubHostname: "172.30.77.11", BindAddress: "172.30.77.11", Port: 22, DockerImage: "img"},
		{Hostname: "h2.example", PubHostname: "198.51.100.2", BindAddress: "10.0.0.2", Port: 2222},
		{Hostname: "localhost", PubHostname: "127.0.0.1", BindAddress: "127.0.0.1", Port: 22},
	}
	p, h := isolationFor(a, a.settings.WorkspaceHosts[0])
	if h.Image != "img" || h.SSHPort != 22 || !p.Egress {
		t.Errorf("host %+v policy %+v", h, p)
	}
	var targets []string
	for _, o := range h.Others {
		targets = append(targets, o.Name+"="+o.Addr.String())
	}
	want := "host h2.example sshd=10.0.0.2:2222 own sshd on 172.30.77.11=172.30.77.11:22 host h2.example sshd=198.51.100.2:2222"
	if got := strings.Join(targets, " "); got != want {
		t.Errorf("targets\n got %s\nwant %s", got, want)
	}
	var closed []string
	for _, r := range p.ClosedRanges() {
		closed = append(closed, r.String())
	}
	for _, r := range []string{"169.254.0.0/16", "198.51.100.2/32", "203.0.113.0/24", "10.0.0.2/32", "172.30.77.11/32"} {
		if !strings.Contains(strings.Join(closed, " "), r) {
			t.Errorf("closed ranges %v lack %s", closed, r)
		}
	}
	if strings.Contains(strings.Join(closed, " "), "127.") {
		t.Errorf("loopback closed: %v", closed)
	}
}

// A proof outlives the host check's deadline but not a shutdown.
func TestProofContext(t *testing.T) {
	parent, cancelParent := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelParent()
	pctx, cancel := proofContext(parent)
	<-parent.Done()
	time.Sleep(20 * time.Millisecond)
	if pctx.Err() != nil {
		t.Errorf("proof cut by the check's deadline: %v", pctx.Err())
	}
	cancel()

	parent, cancelParent = context.WithCancel(context.Background())
	pctx, cancel = proofContext(parent)
	defer cancel()
	cancelParent()
	select {
	case <-pctx.Done():
	case <-time.After(time.Second):
		t.Error("proof not ended by a shutdown")
	}
}
