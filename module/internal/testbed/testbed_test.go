package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// fakeTB records how Load ends a test, without ending this one.
type fakeTB struct {
	testing.TB
	outcome string // "skip", "fatal" or ""
	msg     string
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Skip(args ...any)          { f.end("skip", fmt.Sprint(args...)) }
func (f *fakeTB) Fatal(args ...any)         { f.end("fatal", fmt.Sprint(args...)) }
func (f *fakeTB) Fatalf(s string, a ...any) { f.end("fatal", fmt.Sprintf(s, a...)) }
func (f *fakeTB) end(outcome, msg string) {
	f.outcome, f.msg = outcome, msg
	runtime.Goexit()
}

func load(t *testing.T) (*Testbed, *fakeTB) {
	t.Helper()
	f := &fakeTB{TB: t}
	var tb *Testbed
	done := make(chan struct{})
	go func() {
		defer close(done)
		tb = Load(f)
	}()
	<-done
	return tb, f
}

func TestLoadMissingSkipsUnlessRequired(t *testing.T) {
	t.Setenv(EnvPath, filepath.Join(t.TempDir(), "testbed.json"))
	t.Setenv(EnvRequired, "")
	if _, f := load(t); f.outcome != "skip" {
		t.Fatalf("missing test bed: %q %q; want a skip", f.outcome, f.msg)
	}
	t.Setenv(EnvRequired, "1")
	if _, f := load(t); f.outcome != "fatal" {
		t.Fatalf("missing test bed with %s=1: %q %q; want a failure", EnvRequired, f.outcome, f.msg)
	}
}

func TestLoadReadsAndGuardsAddresses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "testbed.json")
	t.Setenv(EnvPath, path)
	write := func(ip string) {
		data := fmt.Sprintf(`{"hosts":[{"name":"rdtb-host-1","ip":%q,"user":"root","ssh_port":22}],
			"ssh_key":"/k","known_hosts":"/kh","desktop_image":"rd-desktop:latest","tiny_image":"rd-tiny:latest"}`, ip)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("172.30.77.11")
	tb, f := load(t)
	if f.outcome != "" || tb == nil {
		t.Fatalf("Load: %q %q", f.outcome, f.msg)
	}
	if h := tb.Hosts[0]; h.Addr() != "172.30.77.11:22" || h.Name != "rdtb-host-1" || tb.TinyImage != "rd-tiny:latest" || tb.Path != path {
		t.Fatalf("loaded %+v", tb)
	}
	write("10.0.0.1")
	if _, f := load(t); f.outcome != "fatal" {
		t.Fatalf("host outside the allowed networks: %q; want a failure", f.outcome)
	}
}
