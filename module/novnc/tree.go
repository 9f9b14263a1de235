// Package novnc holds the noVNC web client Caddy serves itself: a read-only
// in-memory file tree built from a tar stream of the operator's desktop
// image (symlinks resolved through the same source, bounded), and a cache
// of those trees by image ID. Nothing here talks to Docker: the caller
// supplies the tar streams.
package novnc

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// ArchiveFunc returns a tar stream of an absolute path inside an image,
// its entries named after the path's last element (the Engine API's
// container archive). A last element that is a symlink comes back as the
// link; it is not followed. A path that does not exist is an error
// matching fs.ErrNotExist.
type ArchiveFunc func(ctx context.Context, abs string) (io.ReadCloser, error)

// Limits bound what one tree may hold and cost.
type Limits struct {
	MaxBytes    int64 // total file bytes; default 64 MiB
	MaxFiles    int   // default 10000
	MaxArchives int   // archive calls, root included; default 64
	MaxHops     int   // symlinks followed in one chain; default 8
}

func (l *Limits) defaults() {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 64 << 20
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = 10000
	}
	if l.MaxArchives <= 0 {
		l.MaxArchives = 64
	}
	if l.MaxHops <= 0 {
		l.MaxHops = 8
	}
}

// ErrNotFound wraps the error of a root path the image does not have.
var ErrNotFound = errors.New("not found in the image")

// Tree is a read-only file system of regular files only; it implements
// fs.FS (directories cannot be opened).
type Tree struct {
	files  map[string]*file
	size   int64
	digest string
}

type file struct {
	data    []byte
	modTime time.Time
}

// Size is the total bytes of the tree's files.
func (t *Tree) Size() int64 { return t.size }

// Len is how many files the tree holds.
func (t *Tree) Len() int { return len(t.files) }

// Digest names the tree by its content (SHA-256 of every file's name and
// bytes, in name order, 32 hex digits): two images with the same noVNC
// files, wherever they were built, have the same digest, so a browser
// that cached one's files has the other's.
func (t *Tree) Digest() string { return t.digest }

// Names lists the tree's files in name order.
func (t *Tree) Names() []string {
	names := make([]string, 0, len(t.files))
	for n := range t.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (t *Tree) sum() string {
	h := sha256.New()
	for _, n := range t.Names() {
		// Length-prefixed, so that no two trees hash the same bytes.
		fmt.Fprintf(h, "%d:%s%d:", len(n), n, len(t.files[n].data))
		h.Write(t.files[n].data)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Open implements fs.FS.
func (t *Tree) Open(name string) (fs.File, error) {
	f, ok := t.files[name]
	if !ok || !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &openFile{Reader: bytes.NewReader(f.data), name: path.Base(name), f: f}, nil
}

type openFile struct {
	*bytes.Reader
	name string
	f    *file
}

func (o *openFile) Stat() (fs.FileInfo, error) { return o, nil }
func (o *openFile) Close() error               { return nil }
func (o *openFile) Name() string               { return o.name }
func (o *openFile) Size() int64                { return int64(len(o.f.data)) }
func (o *openFile) Mode() fs.FileMode          { return 0o444 }
func (o *openFile) ModTime() time.Time         { return o.f.modTime }
func (o *openFile) IsDir() bool                { return false }
func (o *openFile) Sys() any                   { return nil }

// builder reads tar streams into a Tree, following symlinks through the
// archive source.
type builder struct {
	archive ArchiveFunc
	lim     Limits
	root    string
	calls   int
	tree    *Tree
}

// Build reads the directory root (absolute) of an image into a Tree. Each
// symlink in it is resolved inside the image, wherever it points (Debian's
// noVNC may link into /usr/share/javascript), through archive, within lim;
// a dangling link is left out.
func Build(ctx context.Context, archive ArchiveFunc, root string, lim Limits) (*Tree, error) {
	lim.defaults()
	if !path.IsAbs(root) {
		return nil, fmt.Errorf("noVNC path %q is not absolute", root)
	}
	root = path.Clean(root)
	b := &builder{archive: archive, lim: lim, root: root, tree: &Tree{files: map[string]*file{}}}
	if err := b.graft(ctx, root, "", 0, true); err != nil {
		return nil, err
	}
	if _, ok := b.tree.files["vnc.html"]; !ok {
		return nil, fmt.Errorf("%s has no vnc.html: %w", root, ErrNotFound)
	}
	b.tree.digest = b.tree.sum()
	return b.tree, nil
}

// graft reads the image path abs and puts what it is (a file, or a
// directory's files) at dest in the tree, following symlinks.
func (b *builder) graft(ctx context.Context, abs, dest string, hops int, isRoot bool) error {
	if b.calls >= b.lim.MaxArchives {
		return fmt.Errorf("more than %d reads to resolve noVNC's symlinks", b.lim.MaxArchives)
	}
	b.calls++
	rc, err := b.archive(ctx, abs)
	if err != nil {
		if isRoot && errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", abs, ErrNotFound)
		}
		return err
	}
	defer rc.Close()
	type link struct{ at, target, from string }
	var links []link
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the archive of %s: %w", abs, err)
		}
		// Entries are "<base>", "<base>/x", ...: strip the first element.
		name := strings.TrimSuffix(h.Name, "/")
		_, rel, _ := strings.Cut(name, "/")
		if rel != "" && (!fs.ValidPath(rel) || strings.Contains(rel, "\\")) {
			continue
		}
		at := path.Join(dest, rel)
		if at == "." {
			at = ""
		}
		real := path.Join(abs, rel) // where the entry is in the image
		switch h.Typeflag {
		case tar.TypeReg:
			if at == "" {
				return fmt.Errorf("%s is a file, not a directory", abs)
			}
			if err := b.add(at, tr, h); err != nil {
				return err
			}
		case tar.TypeSymlink:
			links = append(links, link{at: at, target: h.Linkname, from: path.Dir(real)})
		}
	}
	for _, l := range links {
		if hops+1 > b.lim.MaxHops {
			return fmt.Errorf("symlink %s: more than %d links in a chain", l.at, b.lim.MaxHops)
		}
		target := l.target
		if !path.IsAbs(target) {
			target = path.Join(l.from, target)
		}
		target = path.Clean(target)
		if l.at == "" { // the path asked for is itself a link
			if err := b.graft(ctx, target, dest, hops+1, isRoot); err != nil {
				return err
			}
			continue
		}
		// A link to a file already read (vnc_auto.html -> vnc.html) costs
		// no archive call.
		if rel, ok := strings.CutPrefix(target, b.root+"/"); ok {
			if f, ok := b.tree.files[rel]; ok {
				b.tree.files[l.at] = f
				continue
			}
		}
		// A dangling link is left out, as a web server would 404 it.
		if err := b.graft(ctx, target, l.at, hops+1, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("symlink %s -> %s: %w", l.at, l.target, err)
		}
	}
	return nil
}

func (b *builder) add(at string, r io.Reader, h *tar.Header) error {
	if _, dup := b.tree.files[at]; dup {
		return nil
	}
	if len(b.tree.files) >= b.lim.MaxFiles {
		return fmt.Errorf("noVNC has more than %d files", b.lim.MaxFiles)
	}
	if h.Size < 0 || b.tree.size+h.Size > b.lim.MaxBytes {
		return fmt.Errorf("noVNC is larger than %d bytes", b.lim.MaxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(r, h.Size))
	if err != nil {
		return fmt.Errorf("read %s: %w", at, err)
	}
	b.tree.files[at] = &file{data: data, modTime: h.ModTime}
	b.tree.size += int64(len(data))
	return nil
}
