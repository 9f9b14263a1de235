package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// allowed are the only networks the benchmark sends traffic to: loopback
// and the test bed's.
var allowed = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("172.30.77.0/24"),
}

func checkAllowedAddr(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("bench: %q is not an IP address; refusing to resolve names", host)
	}
	for _, p := range allowed {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("bench: refusing to send traffic to %s (only %v)", hostport, allowed)
}

func checkAllowedURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return checkAllowedAddr(host)
}

// Dialer dials only loopback and the test bed's network.
var Dialer = &net.Dialer{
	Timeout: 5 * time.Second,
	Control: func(_, address string, _ syscall.RawConn) error {
		return checkAllowedAddr(address)
	},
}

// DialContext is Dialer's DialContext.
func DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return Dialer.DialContext(ctx, network, addr)
}

// NewHTTPClient is a keep-alive client for the allowed networks that does
// not follow redirects and ignores proxy settings.
func NewHTTPClient(maxConns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         DialContext,
			MaxIdleConns:        maxConns,
			MaxIdleConnsPerHost: maxConns,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
