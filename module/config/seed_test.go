package config

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// The seed's own sample hosts.yml (testdata/seed/hosts.yml, unchanged but for
// the indentation the seed's copy lost) loads, and its DNS pub_hostname
// publishes ports on the address that name resolves to.
func TestSeedSampleLoads(t *testing.T) {
	f, err := Load("../../testdata/seed/hosts.yml")
	if err != nil {
		t.Fatalf("load the seed's hosts.yml: %v", err)
	}
	if len(f.WorkspaceHosts) != 1 {
		t.Fatalf("hosts: %+v", f.WorkspaceHosts)
	}
	h := f.WorkspaceHosts[0]
	if h.Hostname != "host1.internal" || h.User != "docker_user" || h.PubHostname != "host1.external.com" ||
		h.DockerImage != "ctfd-remote-desktop:latest" || h.Port != 22 {
		t.Fatalf("host: %+v", h)
	}
	c, s := f.ContainerDefaults, f.SessionDefaults
	if c.MemoryLimit != "4g" || c.ShmSize != "2gb" || c.Resolution != "1920x1080" || c.CPULimit != 2 {
		t.Fatalf("container_defaults: %+v", c)
	}
	if s.InitialDuration != 3600 || s.ExtensionDuration != 1200 || s.Extensions() != 3 {
		t.Fatalf("session_defaults: %+v", s)
	}
	if !h.BindsByName() {
		t.Fatalf("bind_address %q: want it left to pub_hostname's resolution", h.BindAddress)
	}

	var asked []string
	lookup := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		asked = append(asked, network+" "+host)
		return []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.10"), netip.MustParseAddr("192.0.2.11")}, nil
	}
	bind, err := h.Bind(context.Background(), lookup)
	if err != nil || bind != "192.0.2.10" {
		t.Fatalf("Bind = %q, %v; want the first address, unmapped", bind, err)
	}
	if len(asked) != 1 || asked[0] != "ip host1.external.com" {
		t.Fatalf("lookups: %q", asked)
	}
}

func TestBind(t *testing.T) {
	ctx := context.Background()
	answer := func(addrs []netip.Addr, err error) LookupFunc {
		return func(context.Context, string, string) ([]netip.Addr, error) { return addrs, err }
	}
	fail := func(context.Context, string, string) ([]netip.Addr, error) {
		t.Fatal("lookup with bind_address set")
		return nil, nil
	}
	// An explicit or IP-derived bind_address is used as is, without a lookup.
	for _, h := range []Host{
		{Hostname: "h.internal", PubHostname: "h.example", BindAddress: "10.0.0.5"},
		{Hostname: "h.internal", PubHostname: "192.0.2.4"},
		{Hostname: "localhost"},
	} {
		f := File{WorkspaceHosts: []Host{h}}
		f.SetDefaults()
		got, err := f.WorkspaceHosts[0].Bind(ctx, fail)
		if err != nil || got == "" || got != f.WorkspaceHosts[0].BindAddress {
			t.Errorf("%+v: Bind = %q, %v", h, got, err)
		}
	}
	h := Host{Hostname: "h.internal", PubHostname: "h.example"}
	if _, err := h.Bind(ctx, answer(nil, errors.New("no such host"))); err == nil ||
		!strings.Contains(err.Error(), `resolve pub_hostname "h.example"`) || !strings.Contains(err.Error(), "no such host") {
		t.Errorf("failed lookup: %v", err)
	}
	if _, err := h.Bind(ctx, answer([]netip.Addr{netip.IPv4Unspecified()}, nil)); err == nil {
		t.Error("a name resolving to 0.0.0.0 must not publish on every address")
	}
	if got, err := h.Bind(ctx, answer([]netip.Addr{netip.MustParseAddr("2001:db8::7")}, nil)); err != nil || got != "2001:db8::7" {
		t.Errorf("IPv6: %q, %v", got, err)
	}
}
