package config

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// BindsByName reports whether the host's ports are published on the address
// pub_hostname resolves to (bind_address unset, pub_hostname a DNS name).
// Call SetDefaults first.
func (h Host) BindsByName() bool { return h.BindAddress == "" }

// LookupFunc resolves a host name, as (*net.Resolver).LookupNetIP does.
type LookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// Bind is the address to publish the host's container ports on: bind_address,
// or, when pub_hostname is a DNS name, the first address it resolves to with
// lookup (nil: the system resolver). The first address is the one a dialer
// tries first, so it is where Caddy's proxy reaches the port.
func (h Host) Bind(ctx context.Context, lookup LookupFunc) (string, error) {
	if !h.BindsByName() {
		return h.BindAddress, nil
	}
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	addrs, err := lookup(ctx, "ip", h.PubHostname)
	if err != nil {
		return "", fmt.Errorf("resolve pub_hostname %q to publish ports on (set bind_address to skip this): %w", h.PubHostname, err)
	}
	for _, a := range addrs {
		if a = a.Unmap(); a.IsValid() && !a.IsUnspecified() {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("pub_hostname %q resolves to no usable address (set bind_address)", h.PubHostname)
}
