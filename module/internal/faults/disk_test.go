package faults

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// A player who fills their disk gets "No space left on device" inside
// their own desktop, and nothing else: their root filesystem is read-only,
// /tmp is a capped tmpfs, the host's /var/lib/docker takes none of it, and
// another session on the same host keeps answering through the proxy while
// a new create on that host succeeds.
func TestPlayerFillingTheirDisk(t *testing.T) {
	s := newSystem(t, sysConfig{desktop: true, extra: "\t\ttmp_size 64m"})
	h := s.Bed.Hosts[0]
	// Every session on one host: drain the others (in this Caddy only).
	for _, other := range s.Bed.Hosts[1:] {
		if a := s.Req(e2e.AdminUserID, http.MethodPost, "/remote-desktop/admin/api/hosts/drain", `{"host":"`+other.IP+`"}`, nil); a.Code != http.StatusOK {
			t.Fatalf("drain %s: %d %v", other.IP, a.Code, a.Body)
		}
	}
	filler, victim := s.NewUser(), s.NewUser()
	fs := s.CreateReady(filler, 60*time.Second)
	if vs := s.CreateReady(victim, 60*time.Second); fs["host"] != h.IP || vs["host"] != h.IP {
		t.Fatalf("sessions on %v and %v, want both on %s", fs["host"], vs["host"], h.IP)
	}
	ctr := s.ContainerOf(h, fmt.Sprint(fs["id"]))
	if ctr == "" {
		t.Fatal("no container for the filler's session")
	}

	// The player (the image's user, as in their desktop's terminal) writes
	// until the disk is full, then tries the rest of the filesystem.
	start := time.Now()
	out, err := testbed.TryExec(h, "docker", "exec", ctr, "sh", "-c",
		`dd if=/dev/zero of=/tmp/fill bs=1M count=1024 2>&1; echo "dd=$?"; `+
			`echo x > /home/player/f 2>&1 || echo home-refused; echo x > /var/tmp/f 2>&1 || echo var-refused; `+
			`echo x > /f 2>&1 || echo root-refused; df -B1 /tmp | tail -1`)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("docker exec: %v", err)
	}
	t.Logf("inside the desktop:\n%s", out)
	if !strings.Contains(out, "No space left on device") || strings.Contains(out, "dd=0") {
		t.Fatalf("writing 1 GiB to /tmp did not end with ENOSPC:\n%s", out)
	}
	for _, want := range []string{"home-refused", "var-refused", "root-refused", "Read-only file system"} {
		if !strings.Contains(out, want) {
			t.Errorf("writing outside /tmp was not refused (%s missing):\n%s", want, out)
		}
	}
	// The container's writable layer on the host's disk stayed empty.
	sizeRw := strings.TrimSpace(testbed.Exec(t, h, "docker", "inspect", "--size", "-f", "{{.SizeRw}}", ctr))
	rw, err := strconv.ParseInt(sizeRw, 10, 64)
	if err != nil || rw > 1<<20 {
		t.Errorf("the container's writable layer holds %q bytes, want under 1 MiB", sizeRw)
	}

	// The host and its other session keep working.
	if a := s.desktop(victim); a.Code != http.StatusOK {
		t.Errorf("the other session on %s: %d through the proxy", h.IP, a.Code)
	}
	if a := s.desktop(filler); a.Code != http.StatusOK {
		t.Logf("the filler's own desktop page: %d (their own business)", a.Code)
	}
	third := s.NewUser()
	t0 := time.Now()
	if ts := s.CreateReady(third, 60*time.Second); ts["host"] != h.IP {
		t.Errorf("new session on %v, want %s", ts["host"], h.IP)
	}
	if hs := s.Hosts()[h.IP]; hs.Health != "healthy" {
		t.Errorf("host %s after the fill: %s (%s)", h.IP, hs.Health, hs.Reason)
	}
	measured(t, "disk fill: ENOSPC inside the desktop after %v (tmp_size 64m), writable layer %d bytes; other session 200; new create on the host ready in %v",
		took.Round(time.Millisecond), rw, time.Since(t0).Round(time.Millisecond))
}
