package remotedesktop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/novnc"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
	"github.com/ctf-desktops/caddy-remote-desktop/module/web"
)

// defaultNoVNCPath is where Debian's novnc package puts the web client.
const defaultNoVNCPath = "/usr/share/novnc"

// noVNCBuildTimeout bounds reading noVNC out of an image (create, archive
// calls, remove) over a host's SSH connection.
const noVNCBuildTimeout = 60 * time.Second

// LabelFiles marks the never-started containers made to read an image's
// files; they are removed right after (and, if Caddy dies first, reaped as
// orphans: they carry the session manager's helper labels).
const LabelFiles = "io.ctf-remote-desktop.files"

// imageNoVNC serves the noVNC that is inside the desktop's own image: the
// operator built the image and a player never touched it, so its files are
// trusted, and they always match the websockify the desktop runs. They are
// read through the Engine API from a container that is never started,
// once per image ID.
type imageNoVNC struct {
	path     string
	hosts    *hosts.Orchestrator
	sessions *session.Manager // labels its helper containers
	cache    *novnc.Cache
	logger   *zap.Logger

	mu     sync.Mutex
	images map[string]imageRef // by container ID

	// current is the image the next desktop most likely runs (Current),
	// resolved at most once per currentTTL; resolving holds currentSem.
	current    currentImage
	currentSem chan struct{}
}

type currentImage struct {
	host, ref string
	img       imageRef
	err       error
	at        time.Time
}

// currentTTL is how long Current trusts an image tag's resolution: an
// operator who rebuilds the image under the same tag is seen this late.
const currentTTL = time.Minute

// currentFailTTL is how long Current remembers that it could not resolve.
const currentFailTTL = 10 * time.Second

type imageRef struct{ id, ref string }

// maxImageRefs bounds the container → image memo (an entry is ~150 bytes).
const maxImageRefs = 10000

// Files implements web.NoVNC.
func (n *imageNoVNC) Files(ctx context.Context, t session.Target) (fs.FS, error) {
	h, ok := n.hosts.Get(t.Host)
	if !ok || t.ContainerID == "" {
		return nil, &web.Error{Status: http.StatusBadGateway, Code: "novnc_unavailable", Message: "the desktop's host is not configured any more"}
	}
	img, err := n.image(ctx, h, t.ContainerID)
	if err != nil {
		n.logger.Warn("noVNC: cannot inspect the desktop's container", zap.String("host", t.Host), zap.Error(err))
		return nil, &web.Error{Status: http.StatusBadGateway, Code: "novnc_unavailable", Message: "noVNC could not be read from the desktop image; try again in a moment"}
	}
	tree, err := n.cache.Get(ctx, img.id+"\x00"+n.path, noVNCBuildTimeout, func(ctx context.Context) (*novnc.Tree, error) {
		return n.build(ctx, h, img)
	})
	switch {
	case err == nil:
		return tree, nil
	case errors.Is(err, novnc.ErrNotFound):
		return nil, &web.Error{Status: http.StatusBadGateway, Code: "novnc_missing",
			Message: fmt.Sprintf("The desktop image %s (%s) has no noVNC at %s. The operator must install noVNC there, or set novnc_path or novnc_root.", img.ref, shortID(img.id), n.path)}
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		return nil, &web.Error{Status: http.StatusBadGateway, Code: "novnc_unavailable", Message: "noVNC could not be read from the desktop image; try again in a moment"}
	}
}

// Shared implements web.SharedNoVNC: noVNC's files by their digest, for
// any tree in the cache.
func (n *imageNoVNC) Shared(digest string) (fs.FS, bool) {
	t, ok := n.cache.ByDigest(digest)
	if !ok {
		return nil, false
	}
	return t, true
}

// Current implements web.SharedNoVNC: the files of the image the first
// healthy, undrained host runs desktops from (all hosts normally run the same), read
// from the image if they are not cached yet, so that a player's browser
// can fetch them while the player has no desktop.
func (n *imageNoVNC) Current(ctx context.Context) (fs.FS, error) {
	h := n.currentHost()
	if h == nil {
		return nil, errors.New("no host that is healthy or not yet checked")
	}
	ref := h.Config().DockerImage
	cur, err := n.resolveCurrent(ctx, h, ref)
	if err != nil {
		return nil, err
	}
	tree, err := n.cache.Get(ctx, cur.img.id+"\x00"+n.path, noVNCBuildTimeout, func(ctx context.Context) (*novnc.Tree, error) {
		return n.build(ctx, h, cur.img)
	})
	if err != nil {
		return nil, err
	}
	return tree, nil
}

// resolveCurrent returns the image ref names on h, asking the host at most
// once per currentTTL (a failure is kept currentFailTTL, so that players'
// pages do not queue up behind an unreachable host).
func (n *imageNoVNC) resolveCurrent(ctx context.Context, h *hosts.Host, ref string) (currentImage, error) {
	select {
	case n.currentSem <- struct{}{}:
	case <-ctx.Done():
		return currentImage{}, ctx.Err()
	}
	defer func() { <-n.currentSem }()
	cur := n.current
	ttl := currentTTL
	if cur.err != nil {
		ttl = currentFailTTL
	}
	if cur.host == h.Name() && cur.ref == ref && time.Since(cur.at) <= ttl {
		return cur, cur.err
	}
	cur = currentImage{host: h.Name(), ref: ref, at: time.Now()}
	cur.err = h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		id, err := d.ImageID(ctx, ref)
		cur.img = imageRef{id: id, ref: ref}
		return err
	})
	if cur.err != nil {
		cur.err = fmt.Errorf("resolve image %s on %s: %w", ref, h.Name(), cur.err)
	}
	if ctx.Err() == nil { // a caller giving up says nothing of the host
		n.current = cur
	}
	return cur, cur.err
}

// currentHost is the first healthy, undrained host, else the first not
// checked yet (right after a start, players' pages load before the first
// checks end).
func (n *imageNoVNC) currentHost() *hosts.Host {
	var unchecked *hosts.Host
	for _, st := range n.hosts.Status() {
		h, ok := n.hosts.Get(st.Name)
		switch {
		case !ok:
		case st.Drained:
		case st.Health == hosts.Healthy:
			return h
		case st.Health == hosts.Unknown && unchecked == nil:
			unchecked = h
		}
	}
	return unchecked
}

func (n *imageNoVNC) build(ctx context.Context, h *hosts.Host, img imageRef) (*novnc.Tree, error) {
	start := time.Now()
	var tree *novnc.Tree
	err := h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		labels := n.sessions.HelperLabels()
		labels[LabelFiles] = "novnc"
		return d.WithImageFiles(ctx, img.id, labels,
			func(ctx context.Context, archive func(context.Context, string) (io.ReadCloser, error)) error {
				var err error
				tree, err = novnc.Build(ctx, func(ctx context.Context, p string) (io.ReadCloser, error) {
					rc, err := archive(ctx, p)
					if errors.Is(err, docker.ErrNotFound) {
						return nil, fmt.Errorf("%w: %v", fs.ErrNotExist, err)
					}
					return rc, err
				}, n.path, novnc.Limits{})
				return err
			})
	})
	if err != nil {
		n.logger.Warn("noVNC: cannot read it from the desktop image", zap.String("image", img.ref),
			zap.String("image_id", img.id), zap.String("path", n.path), zap.String("host", h.Name()), zap.Error(err))
		return nil, err
	}
	n.logger.Info("noVNC read from the desktop image", zap.String("image", img.ref), zap.String("image_id", img.id),
		zap.String("path", n.path), zap.Int("files", tree.Len()), zap.Int64("bytes", tree.Size()),
		zap.Duration("took", time.Since(start)))
	return tree, nil
}

// image returns the image a container was created from, remembered (a
// container's image never changes).
func (n *imageNoVNC) image(ctx context.Context, h *hosts.Host, containerID string) (imageRef, error) {
	n.mu.Lock()
	img, ok := n.images[containerID]
	n.mu.Unlock()
	if ok {
		return img, nil
	}
	err := h.Engine.Do(ctx, func(ctx context.Context, d *docker.Client) error {
		var err error
		img.id, img.ref, err = d.ContainerImage(ctx, containerID)
		return err
	})
	if err != nil {
		return imageRef{}, err
	}
	n.mu.Lock()
	if n.images == nil || len(n.images) >= maxImageRefs {
		n.images = map[string]imageRef{}
	}
	n.images[containerID] = img
	n.mu.Unlock()
	return img, nil
}

func shortID(id string) string {
	if len(id) > 19 {
		return id[:19]
	}
	return id
}

// dirNoVNC serves noVNC from a directory of this machine (novnc_root).
type dirNoVNC struct{ fs fs.FS }

// Files implements web.NoVNC.
func (d dirNoVNC) Files(context.Context, session.Target) (fs.FS, error) { return d.fs, nil }

func newDirNoVNC(root string) (dirNoVNC, error) {
	if st, err := os.Stat(root + "/vnc.html"); err != nil || st.IsDir() {
		return dirNoVNC{}, fmt.Errorf("novnc_root: %s has no vnc.html", root)
	}
	return dirNoVNC{fs: os.DirFS(root)}, nil
}

// Interface guards
var (
	_ web.SharedNoVNC = (*imageNoVNC)(nil)
	_ web.NoVNC       = dirNoVNC{}
)
