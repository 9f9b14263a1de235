package remotedesktop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"go.uber.org/zap"

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
	keys, err := s.storage.List(ctx, warmPrefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", warmPrefix, err)
	}
	out := make([]session.WarmDesk, 0, len(keys))
	for _, k := range keys {
		if path.Ext(k) != ".json" {
			continue
		}
		data, err := s.storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", k, err)
		}
		var d session.WarmDesk
		if err := json.Unmarshal(data, &d); err != nil {
			// Without its record, its container is removed at the host's
			// listing: never guessed at.
			s.logger.Error("skipping unreadable warm desktop record", zap.String("key", k), zap.Error(err))
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

var _ session.WarmStore = storageStore{}
