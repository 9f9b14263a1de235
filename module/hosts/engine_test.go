package hosts

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
)

// An engine negotiates the API version once and every later operation's
// client speaks it without asking again.
func TestEngineKeepsNegotiatedVersion(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("API-Version", "1.44")
		switch r.URL.Path {
		case "/version":
			_, _ = w.Write([]byte(`{"Version":"25.0.5","ApiVersion":"1.44","MinAPIVersion":"1.24"}`))
		case "/_ping":
			_, _ = w.Write([]byte("OK"))
		default:
			_, _ = w.Write([]byte(`{"Id":"sha256:1"}`))
		}
	}))
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	e := &LocalEngine{Socket: sock}
	for range 2 {
		err := e.Do(context.Background(), func(ctx context.Context, d *docker.Client) error {
			_, err := d.ImagePresent(ctx, "rd-tiny:latest")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := "/_ping /version /v1.44/images/rd-tiny:latest/json /v1.44/images/rd-tiny:latest/json"
	if got := strings.Join(paths, " "); got != want {
		t.Fatalf("requests %s; want %s", got, want)
	}

	// The host check renegotiates and shows the result in its detail.
	h := NewHost(config.Host{Hostname: "localhost", DockerImage: "rd-tiny:latest"}, e, "")
	checks := CheckHost(context.Background(), h, nil)
	if !checks[1].OK || checks[1].Detail != "API 1.44 (engine 25.0.5 serves 1.24–1.44)" {
		t.Fatalf("docker check %+v", checks[1])
	}
}
