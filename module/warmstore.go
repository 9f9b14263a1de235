package remotedesktop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// Warm desktops' records sit beside the sessions' in Caddy's storage, one
// small JSON file each under remote_desktop/warm/ (they hold the VNC
// password the claiming session gets).
const warmPrefix = "remote_desktop/warm"

func warmKey(id string) string { return path.Join(warmPrefix, id+".json") }

func (s storageStore) SaveWarm(ctx context.Context, d session.WarmDesk) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode warm desktop %s: %w", d.ID, err)
	}
	if err := s.storage.Store(ctx, warmKey(d.ID), data); err != nil {
		return fmt.Errorf("store warm desktop %s: %w", d.ID, err)
	}
	return nil
}

func (s storageStore) DeleteWarm(ctx context.Context, id string) error {
	err := s.storage.Delete(ctx, warmKey(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete warm desktop %s: %w", id, err)
	}
	return nil
}

func (s storageStore) LoadWarm(ctx context.Context) ([]session.WarmDesk, error) {
	return loadRecords[session.WarmDesk](ctx, s, warmPrefix, "warm desktop")
}

var _ session.WarmStore = storageStore{}
