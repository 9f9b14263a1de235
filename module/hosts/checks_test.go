package hosts

import "testing"

// A failed check marked Warn (isolation under `isolation warn`) is
// reported but keeps the host in rotation; unmarked, it takes it out.
func TestWarnChecksKeepTheHostInRotation(t *testing.T) {
	checks := []Check{{Name: "ssh", OK: true}, {Name: "docker", OK: true}, {Name: "image", OK: true},
		{Name: "isolation", OK: false, Detail: "NOT isolated", Warn: true}}
	if ok, reason := summarize(checks); !ok || reason != "" {
		t.Errorf("warn: ok=%v reason=%q", ok, reason)
	}
	checks[3].Warn = false
	if ok, reason := summarize(checks); ok || reason != "isolation check failed: NOT isolated" {
		t.Errorf("enforce: ok=%v reason=%q", ok, reason)
	}
}
