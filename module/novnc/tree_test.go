package novnc

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// image is a file system as the Engine API's archive endpoint shows it:
// paths to file contents, "->target" for a symlink, "/" for a directory.
type image map[string]string

// archive answers like GET /containers/{id}/archive: symlinks before the
// last element are followed, the last one is not.
func (im image) archive(calls *atomic.Int32) ArchiveFunc {
	return func(_ context.Context, abs string) (io.ReadCloser, error) {
		if calls != nil {
			calls.Add(1)
		}
		real, ok := im.resolveDir(path.Dir(abs), 0)
		if !ok {
			return nil, fmt.Errorf("%s: %w", abs, fs.ErrNotExist)
		}
		real = path.Join(real, path.Base(abs))
		if _, ok := im[real]; !ok {
			return nil, fmt.Errorf("%s: %w", abs, fs.ErrNotExist)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		base := path.Base(abs)
		var names []string
		for p := range im {
			if p == real || strings.HasPrefix(p, real+"/") {
				names = append(names, p)
			}
		}
		sort.Strings(names)
		for _, p := range names {
			name := base + strings.TrimPrefix(p, real)
			v := im[p]
			h := &tar.Header{Name: name, ModTime: time.Unix(1e9, 0), Mode: 0o644}
			switch {
			case v == "/":
				h.Typeflag, h.Name = tar.TypeDir, name+"/"
			case strings.HasPrefix(v, "->"):
				h.Typeflag, h.Linkname = tar.TypeSymlink, v[2:]
			default:
				h.Typeflag, h.Size = tar.TypeReg, int64(len(v))
			}
			_ = tw.WriteHeader(h)
			if h.Typeflag == tar.TypeReg {
				_, _ = tw.Write([]byte(v))
			}
		}
		_ = tw.Close()
		return io.NopCloser(&buf), nil
	}
}

func (im image) resolveDir(p string, depth int) (string, bool) {
	if p == "/" || depth > 10 {
		return p, depth <= 10
	}
	parent, ok := im.resolveDir(path.Dir(p), depth+1)
	if !ok {
		return "", false
	}
	cur := path.Join(parent, path.Base(p))
	v, ok := im[cur]
	if strings.HasPrefix(v, "->") {
		t := v[2:]
		if !path.IsAbs(t) {
			t = path.Join(parent, t)
		}
		return im.resolveDir(t, depth+1)
	}
	return cur, ok && v == "/"
}

func debianLike() image {
	return image{
		"/usr":                                    "/",
		"/usr/share":                              "/",
		"/usr/share/novnc":                        "/",
		"/usr/share/novnc/vnc.html":               "<html>noVNC</html>",
		"/usr/share/novnc/vnc_auto.html":          "->vnc.html",
		"/usr/share/novnc/app":                    "/",
		"/usr/share/novnc/app/ui.js":              "ui",
		"/usr/share/novnc/vendor":                 "/",
		"/usr/share/novnc/vendor/pako":            "->/usr/share/javascript/pako",
		"/usr/share/novnc/app/jq.js":              "->../../javascript/jquery/jquery.js",
		"/usr/share/novnc/app/gone.js":            "->/nowhere/x.js",
		"/usr/share/javascript":                   "/",
		"/usr/share/javascript/pako":              "/",
		"/usr/share/javascript/pako/pako.js":      "pako",
		"/usr/share/javascript/pako/lib":          "->/usr/share/javascript/pakolib",
		"/usr/share/javascript/pakolib":           "/",
		"/usr/share/javascript/pakolib/z.js":      "zlib",
		"/usr/share/javascript/jquery":            "->jquery3",
		"/usr/share/javascript/jquery3":           "/",
		"/usr/share/javascript/jquery3/jquery.js": "jq",
		"/etc":        "/",
		"/etc/shadow": "secret",
	}
}

func read(t *testing.T, tr *Tree, name string) string {
	t.Helper()
	b, err := fs.ReadFile(tr, name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

func TestBuildResolvesSymlinksInsideTheImage(t *testing.T) {
	var calls atomic.Int32
	tr, err := Build(context.Background(), debianLike().archive(&calls), "/usr/share/novnc", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"vnc.html":             "<html>noVNC</html>",
		"vnc_auto.html":        "<html>noVNC</html>",
		"app/ui.js":            "ui",
		"app/jq.js":            "jq",
		"vendor/pako/pako.js":  "pako",
		"vendor/pako/lib/z.js": "zlib",
	}
	for name, content := range want {
		if got := read(t, tr, name); got != content {
			t.Errorf("%s = %q, want %q", name, got, content)
		}
	}
	if tr.Len() != len(want) {
		t.Errorf("tree has %d files, want %d", tr.Len(), len(want))
	}
	if _, err := tr.Open("app/gone.js"); err == nil {
		t.Error("a dangling link is served")
	}
	for _, bad := range []string{"../etc/shadow", "/etc/shadow", "app", ".", "app/../vnc.html"} {
		if _, err := tr.Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	// root, pako, pakolib, jquery.js and the dangling link: vnc_auto.html
	// is free.
	if n := calls.Load(); n != 5 {
		t.Errorf("%d archive calls, want 5", n)
	}
}

func TestBuildRootThatIsALink(t *testing.T) {
	im := debianLike()
	im["/opt"] = "/"
	im["/opt/novnc"] = "->/usr/share/novnc"
	tr, err := Build(context.Background(), im.archive(nil), "/opt/novnc", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if read(t, tr, "vendor/pako/pako.js") != "pako" {
		t.Fatal("wrong content")
	}
}

func TestBuildErrors(t *testing.T) {
	im := debianLike()
	if _, err := Build(context.Background(), im.archive(nil), "/usr/share/nothing", Limits{}); err == nil || !strings.Contains(err.Error(), ErrNotFound.Error()) {
		t.Errorf("missing root: %v", err)
	}
	if _, err := Build(context.Background(), im.archive(nil), "/usr/share/javascript", Limits{}); err == nil || !strings.Contains(err.Error(), "vnc.html") {
		t.Errorf("root without vnc.html: %v", err)
	}
	if _, err := Build(context.Background(), im.archive(nil), "relative", Limits{}); err == nil {
		t.Error("relative root accepted")
	}
	if _, err := Build(context.Background(), im.archive(nil), "/usr/share/novnc", Limits{MaxBytes: 10}); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("byte bound: %v", err)
	}
	if _, err := Build(context.Background(), im.archive(nil), "/usr/share/novnc", Limits{MaxFiles: 2}); err == nil || !strings.Contains(err.Error(), "files") {
		t.Errorf("file bound: %v", err)
	}
	loop := image{"/n": "/", "/n/vnc.html": "x", "/n/a": "->/n"}
	var calls atomic.Int32
	if _, err := Build(context.Background(), loop.archive(&calls), "/n", Limits{}); err == nil {
		t.Error("a link loop was accepted")
	}
	if calls.Load() > 64 {
		t.Errorf("a link loop cost %d archive calls", calls.Load())
	}
}

func TestCacheBuildsOncePerKey(t *testing.T) {
	c := &Cache{}
	var builds atomic.Int32
	release := make(chan struct{})
	build := func(ctx context.Context) (*Tree, error) {
		builds.Add(1)
		<-release
		return Build(ctx, debianLike().archive(nil), "/usr/share/novnc", Limits{})
	}
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := c.Get(context.Background(), "img1", time.Minute, build)
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := builds.Load(); n != 1 {
		t.Fatalf("%d builds for one key", n)
	}
}

func TestCacheBoundsBytesAndRetriesFailures(t *testing.T) {
	now := time.Unix(0, 0)
	c := &Cache{MaxBytes: 100, FailTTL: time.Second, Now: func() time.Time { return now }}
	ok := func(ctx context.Context) (*Tree, error) {
		return Build(ctx, debianLike().archive(nil), "/usr/share/novnc", Limits{})
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if _, err := c.Get(context.Background(), k, time.Minute, ok); err != nil {
			t.Fatal(err)
		}
	}
	// Each tree is 30 bytes: the fourth evicts the first.
	if c.Len() != 3 || c.size > 100 {
		t.Fatalf("cache holds %d trees, %d bytes; want 3 within 100", c.Len(), c.size)
	}
	var fails atomic.Int32
	bad := func(context.Context) (*Tree, error) { fails.Add(1); return nil, fmt.Errorf("boom") }
	for range 3 {
		if _, err := c.Get(context.Background(), "x", time.Minute, bad); err == nil {
			t.Fatal("no error")
		}
	}
	if fails.Load() != 1 {
		t.Fatalf("a failure was retried %d times within FailTTL", fails.Load()-1)
	}
	now = now.Add(2 * time.Second)
	_, _ = c.Get(context.Background(), "x", time.Minute, bad)
	if fails.Load() != 2 {
		t.Fatal("an old failure was not retried")
	}
}

// The digest names the content: the same files built from another image
// (another layout, the same bytes) share it; one changed byte does not;
// ByDigest finds a cached tree by it and builds nothing.
func TestDigestNamesTheContent(t *testing.T) {
	build := func(im image) *Tree {
		t.Helper()
		tr, err := Build(context.Background(), im.archive(nil), "/usr/share/novnc", Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	a, b := build(debianLike()), build(debianLike())
	if len(a.Digest()) != 32 || a.Digest() != b.Digest() {
		t.Fatalf("digests %q and %q of the same files", a.Digest(), b.Digest())
	}
	changed := debianLike()
	changed["/usr/share/javascript/pako/pako.js"] = "pakO"
	if build(changed).Digest() == a.Digest() {
		t.Fatal("a changed file keeps the digest")
	}
	if got := a.Names(); !slices.IsSorted(got) || len(got) != a.Len() || got[0] != "app/jq.js" {
		t.Fatalf("Names() = %v", got)
	}

	c := &Cache{}
	if _, ok := c.ByDigest(a.Digest()); ok {
		t.Fatal("an empty cache has a tree")
	}
	if _, err := c.Get(context.Background(), "img1", time.Minute, func(context.Context) (*Tree, error) { return a, nil }); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.ByDigest(b.Digest()); !ok || got != a {
		t.Fatal("ByDigest does not find the cached tree")
	}
	if _, ok := c.ByDigest("0123456789abcdef0123456789abcdef"); ok {
		t.Fatal("ByDigest finds an unknown digest")
	}
}
