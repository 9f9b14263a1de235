package novnc

import (
	"context"
	"sync"
	"time"
)

// Cache keeps trees by key (image ID and path), built lazily on first use,
// once however many requests ask at the same time, and bounded in total
// bytes (least recently used trees are dropped first). A failed build is
// remembered for FailTTL so that a misconfigured image does not cost an
// archive call per request.
type Cache struct {
	MaxBytes int64         // default 256 MiB
	FailTTL  time.Duration // default 30s
	Now      func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
	size    int64
	tick    uint64
}

type entry struct {
	done    chan struct{} // closed when tree/err are set
	tree    *Tree
	err     error
	failed  time.Time
	lastUse uint64
}

// Get returns the tree for key, building it with build (under a context
// of its own, bounded by timeout, so that one impatient client does not
// fail the build for everyone waiting) when it is not cached.
func (c *Cache) Get(ctx context.Context, key string, timeout time.Duration, build func(context.Context) (*Tree, error)) (*Tree, error) {
	now := c.now()
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*entry{}
	}
	e, ok := c.entries[key]
	if ok {
		select {
		case <-e.done:
			if e.err != nil && now.Sub(e.failed) >= c.failTTL() {
				ok = false // retry a failure once it is old
			}
		default:
		}
	}
	if !ok {
		e = &entry{done: make(chan struct{})}
		c.entries[key] = e
		go c.fill(key, e, timeout, build)
	}
	c.tick++
	e.lastUse = c.tick
	c.mu.Unlock()

	select {
	case <-e.done:
		return e.tree, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Cache) fill(key string, e *entry, timeout time.Duration, build func(context.Context) (*Tree, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tree, err := build(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	e.tree, e.err = tree, err
	if err != nil {
		e.failed = c.now()
	} else {
		c.size += tree.Size()
		c.evictLocked(key)
	}
	close(e.done)
}

// evictLocked drops least recently used trees (never keep) until the
// cache fits.
func (c *Cache) evictLocked(keep string) {
	max := c.MaxBytes
	if max <= 0 {
		max = 256 << 20
	}
	for c.size > max {
		victim, oldest := "", ^uint64(0)
		for k, e := range c.entries {
			select {
			case <-e.done:
			default:
				continue
			}
			if k != keep && e.tree != nil && e.lastUse < oldest {
				victim, oldest = k, e.lastUse
			}
		}
		if victim == "" {
			return
		}
		c.size -= c.entries[victim].tree.Size()
		delete(c.entries, victim)
	}
}

// ByDigest returns a cached tree with that digest (Tree.Digest), if any.
// It does not build anything, nor count as a use for eviction: a digest
// comes from a browser, which must not be able to keep a tree cached.
func (c *Cache) ByDigest(digest string) (*Tree, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		select {
		case <-e.done:
		default:
			continue
		}
		if e.tree != nil && e.tree.digest == digest {
			return e.tree, true
		}
	}
	return nil, false
}

// Len is how many trees are cached (tests).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.entries {
		if e.tree != nil {
			n++
		}
	}
	return n
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Cache) failTTL() time.Duration {
	if c.FailTTL > 0 {
		return c.FailTTL
	}
	return 30 * time.Second
}
