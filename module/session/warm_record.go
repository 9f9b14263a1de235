package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
)

// WarmDesk is one warm desktop: a container started and answering noVNC
// for nobody yet. It is also its stored record; Password is secret.
type WarmDesk struct {
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	Name        string    `json:"name"`
	ContainerID string    `json:"container_id,omitempty"`
	PubHostname string    `json:"pub_hostname"`
	Port        int       `json:"port,omitempty"`
	VNCPort     int       `json:"vnc_port,omitempty"`
	Password    string    `json:"password"`
	Spec        string    `json:"spec"` // warmSpecHash of what it was made with
	CreatedAt   time.Time `json:"created_at"`
}

// WarmStore keeps warm desktops' records across restarts. A Store that
// also implements it keeps the pool's records; otherwise they live in
// memory and warm containers found at start are removed.
type WarmStore interface {
	SaveWarm(ctx context.Context, d WarmDesk) error
	DeleteWarm(ctx context.Context, id string) error
	LoadWarm(ctx context.Context) ([]WarmDesk, error)
}

// warmSpecHash identifies what a host's warm desktops are made with: the
// container spec without its per-desktop parts (name, labels, password).
// A desktop with another hash is replaced.
func warmSpecHash(hc config.Host, opts Options) string {
	spec := containerSpec(&Session{}, hc, opts.Container, opts.Instance, time.Time{})
	spec.Name, spec.Labels = "", nil
	data, _ := json.Marshal(struct {
		Spec        any
		PubHostname string
	}{spec, hc.PubHostname})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// memWarmStore keeps records in memory, for a Store without WarmStore.
type memWarmStore struct {
	mu sync.Mutex
	m  map[string]WarmDesk
}

func (s *memWarmStore) SaveWarm(_ context.Context, d WarmDesk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[d.ID] = d
	return nil
}

func (s *memWarmStore) DeleteWarm(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func (s *memWarmStore) LoadWarm(context.Context) ([]WarmDesk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WarmDesk, 0, len(s.m))
	for _, d := range s.m {
		out = append(out, d)
	}
	return out, nil
}
