package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
)

const pfx = "/remote-desktop/vnc/"

func TestParsePath(t *testing.T) {
	good := map[string][2]string{
		pfx + "7/vnc.html":               {"7", "/vnc.html"},
		pfx + "7/websockify":             {"7", "/websockify"},
		pfx + "7/app/images/icons/x.png": {"7", "/app/images/icons/x.png"},
		pfx + "7/":                       {"7", "/"},
		pfx + "7":                        {"7", "/"},
		pfx + "alice.b-c_d@x/vnc.html":   {"alice.b-c_d@x", "/vnc.html"},
		pfx + "7/core/util%20x.js":       {"7", "/core/util%20x.js"},
	}
	for in, want := range good {
		u, rest, err := ParsePath(in, pfx)
		if err != nil || u != want[0] || rest != want[1] {
			t.Errorf("ParsePath(%q) = %q, %q, %v; want %q, %q", in, u, rest, err, want[0], want[1])
		}
	}
	bad := []string{
		"/other/7/vnc.html",
		pfx,
		pfx + "/vnc.html",
		pfx + "../7/vnc.html",
		pfx + "7/../8/vnc.html",
		pfx + "7/./vnc.html",
		pfx + "7/a/../../8/x",
		pfx + "7%2F..%2F8/vnc.html",
		pfx + "7/..%2f8",
		pfx + "7/%2e%2e/8",
		pfx + "7/%2E./x",
		pfx + "7/a%5c..%5cb",
		pfx + "7/a\\b",
		pfx + "7/a%00",
		pfx + "7/a\x01b",
		pfx + "%37/vnc.html",
		pfx + "-7/vnc.html",
		pfx + "7 8/vnc.html",
		pfx + strings.Repeat("a", 65) + "/vnc.html",
	}
	for _, in := range bad {
		if u, rest, err := ParsePath(in, pfx); err == nil {
			t.Errorf("ParsePath(%q) accepted: %q %q", in, u, rest)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{pfx + "7/vnc.html", pfx + "7/../8", pfx + "7%2f..", pfx + "a/b/c", "/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		user, rest, err := ParsePath(in, pfx)
		if err != nil {
			return
		}
		// Whatever is accepted names one user and a path inside that
		// user's container: no way up, no encoded separators.
		if !identity.ValidID(user) {
			t.Fatalf("user %q", user)
		}
		for _, seg := range strings.Split(rest, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("dot segment in %q", rest)
			}
		}
		if !strings.HasPrefix(rest, "/") || strings.ContainsAny(strings.ToLower(rest), "\\\x00") ||
			strings.Contains(strings.ToLower(rest), "%2f") || strings.Contains(strings.ToLower(rest), "%2e") {
			t.Fatalf("rest %q", rest)
		}
	})
}

func TestForContainerStripsCredentials(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/remote-desktop/vnc/7/vnc.html?x=1", nil)
	r.Header.Set("Cookie", "session=secret")
	r.Header.Set("Authorization", "Token ctfd_x")
	r.Header.Set("Proxy-Authorization", "Basic x")
	r.Header.Set("X-User-ID", "8")
	r.Header.Set("X-CTFd-Token", "x")
	r.Header.Set("Accept", "text/html")
	out := ForContainer(r, "/vnc.html")
	for _, h := range []string{"Cookie", "Authorization", "Proxy-Authorization", "X-User-Id", "X-Ctfd-Token"} {
		if out.Header.Get(h) != "" {
			t.Errorf("%s reaches the container", h)
		}
	}
	if out.Header.Get("Accept") != "text/html" || out.URL.Path != "/vnc.html" || out.URL.RawQuery != "x=1" {
		t.Errorf("request changed too much: %v %v", out.URL, out.Header)
	}
	if r.Header.Get("Cookie") == "" {
		t.Error("the original request was modified")
	}
}
