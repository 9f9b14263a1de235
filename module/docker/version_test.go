package docker

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// daemonVersions makes the fake daemon answer the unversioned /_ping with
// header (if not empty) as API-Version, and /version with body (404 if
// empty).
func daemonVersions(d *fakeDaemon, header, body string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.routes["GET /_ping"] = func(w http.ResponseWriter, _ *http.Request) {
		if header != "" {
			w.Header().Set("API-Version", header)
		}
		_, _ = w.Write([]byte("OK"))
	}
	d.routes["GET /version"] = func(w http.ResponseWriter, _ *http.Request) {
		if body == "" {
			http.NotFound(w, nil)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}
}

func TestNegotiate(t *testing.T) {
	for name, tc := range map[string]struct {
		header, body string
		want         string // spoken version; "" = refused
		wantText     string // in the String() or the error
	}{
		"docker 20.10": {header: "1.41", body: `{"Version":"20.10.24+dfsg1","ApiVersion":"1.41","MinAPIVersion":"1.12"}`,
			want: "1.41", wantText: "API 1.41 (engine 20.10.24+dfsg1 serves 1.12–1.41)"},
		"engine 29 with min-api-version": {header: "1.56", body: `{"Version":"29.8.1","ApiVersion":"1.56","MinAPIVersion":"1.44"}`,
			want: "1.56", wantText: "API 1.56 (engine 29.8.1 serves 1.44–1.56)"},
		"newer than this client": {header: "1.70", body: `{"Version":"40.0","ApiVersion":"1.70","MinAPIVersion":"1.50"}`,
			want: MaxAPIVersion},
		"ping header only (no /version)": {header: "1.43", want: "1.43", wantText: "API 1.43 (daemon serves up to 1.43)"},
		"/version only (no header)":      {body: `{"ApiVersion":"1.45","MinAPIVersion":"1.24"}`, want: "1.45"},
		"minor compared as a number":     {header: "1.9", body: `{"ApiVersion":"1.9"}`, wantText: "daemon serves API up to 1.9, this client 1.40–" + MaxAPIVersion},
		"no overlap, daemon too old":     {header: "1.39", body: `{"Version":"18.09","ApiVersion":"1.39","MinAPIVersion":"1.12"}`, wantText: "daemon serves API 1.12–1.39, this client 1.40–" + MaxAPIVersion},
		"no overlap, daemon too new":     {header: "1.80", body: `{"ApiVersion":"1.80","MinAPIVersion":"1.60"}`, wantText: "daemon serves API 1.60–1.80, this client 1.40–" + MaxAPIVersion},
		"old daemon without headers":     {wantText: "reports no API version"},
	} {
		t.Run(name, func(t *testing.T) {
			d, c := startFakeDaemon(t)
			c.WithVersion("")
			daemonVersions(d, tc.header, tc.body)
			n, err := c.Negotiate(context.Background())
			if tc.want == "" {
				if !errors.Is(err, ErrNoCommonVersion) || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("Negotiate = %+v, %v; want ErrNoCommonVersion saying %q", n, err, tc.wantText)
				}
				if c.Version() != "" {
					t.Fatalf("version %q after a refusal", c.Version())
				}
				return
			}
			if err != nil || n.Version != tc.want || c.Version() != tc.want {
				t.Fatalf("Negotiate = %+v, %v (client speaks %q); want %s", n, err, c.Version(), tc.want)
			}
			if tc.wantText != "" && n.String() != tc.wantText {
				t.Fatalf("String() = %q; want %q", n.String(), tc.wantText)
			}
		})
	}
}

// A client without a version negotiates before its first request and then
// speaks the result; a refused daemon gets no versioned request at all.
func TestFirstRequestNegotiates(t *testing.T) {
	d, c := startFakeDaemon(t)
	c.WithVersion("")
	daemonVersions(d, "1.56", `{"ApiVersion":"1.56","MinAPIVersion":"1.44"}`)
	d.handle("GET /v1.56/images/rd-tiny:latest/json", 200, `{"Id":"sha256:1"}`)
	for range 2 {
		if ok, err := c.ImagePresent(context.Background(), "rd-tiny:latest"); !ok || err != nil {
			t.Fatalf("ImagePresent = %v, %v", ok, err)
		}
	}
	want := "GET /_ping?|GET /version?|GET /v1.56/images/rd-tiny:latest/json?|GET /v1.56/images/rd-tiny:latest/json?"
	if got := strings.Join(d.Requests(), "|"); got != want {
		t.Fatalf("requests %s; want %s", got, want)
	}

	d, c = startFakeDaemon(t)
	c.WithVersion("")
	daemonVersions(d, "1.39", `{"ApiVersion":"1.39"}`)
	_, err := c.ImagePresent(context.Background(), "rd-tiny:latest")
	if !errors.Is(err, ErrNoCommonVersion) {
		t.Fatalf("ImagePresent = %v; want ErrNoCommonVersion", err)
	}
	if got := strings.Join(d.Requests(), "|"); got != "GET /_ping?|GET /version?" {
		t.Fatalf("requests %s; want only the negotiation", got)
	}
}

func TestNegotiateBoundedByContext(t *testing.T) {
	d, c := startFakeDaemon(t)
	daemonVersions(d, "1.41", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Negotiate(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Negotiate = %v; want context.Canceled", err)
	}
}
