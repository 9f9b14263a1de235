package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTrail(t *testing.T, dir string, c *clock) *Trail {
	tr := New(&certmagic.FileStorage{Path: dir}, "remote_desktop/audit", 3, nil)
	tr.SetClock(c.now)
	return tr
}

func record(t *testing.T, tr *Trail, e Entry) {
	t.Helper()
	if err := tr.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func query(t *testing.T, tr *Trail, f Filter) []Entry {
	t.Helper()
	got, err := tr.Query(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRecordQueryAcrossRestartAndDays(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)}
	tr := newTrail(t, dir, c)
	record(t, tr, Entry{Actor: "1", Action: Kill, User: "7", Result: "ok"})
	record(t, tr, Entry{Actor: "1", Action: SessionViewed, User: "8", Result: "ok"})

	// A restart: a new trail on the same storage continues the same day.
	c.t = c.t.Add(30 * time.Second)
	tr = newTrail(t, dir, c)
	record(t, tr, Entry{Actor: "2", Action: Drain, Host: "h1", Result: "ok"})
	c.t = c.t.Add(time.Minute) // the next day
	record(t, tr, Entry{Actor: "1", Action: Extend, User: "7", Result: "max_extensions"})

	all := query(t, tr, Filter{})
	var got []string
	for _, e := range all {
		got = append(got, e.Action)
	}
	if fmt.Sprint(got) != "[extend drain session_viewed kill]" {
		t.Fatalf("newest first across days and a restart: %v", got)
	}
	if e := query(t, tr, Filter{User: "7"}); len(e) != 2 || e[0].Action != Extend || e[1].Action != Kill {
		t.Fatalf("user filter: %+v", e)
	}
	if e := query(t, tr, Filter{Actor: "2"}); len(e) != 1 || e[0].Host != "h1" {
		t.Fatalf("actor filter: %+v", e)
	}
	if e := query(t, tr, Filter{Action: SessionViewed}); len(e) != 1 || e[0].User != "8" {
		t.Fatalf("action filter: %+v", e)
	}
	day2 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	if e := query(t, tr, Filter{Since: day2}); len(e) != 1 || e[0].Action != Extend {
		t.Fatalf("since: %+v", e)
	}
	if e := query(t, tr, Filter{Until: day2}); len(e) != 3 {
		t.Fatalf("until: %+v", e)
	}
	if e := query(t, tr, Filter{Limit: 2}); len(e) != 2 || e[1].Action != Drain {
		t.Fatalf("limit: %+v", e)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "remote_desktop/audit/*.jsonl")); len(files) != 2 {
		t.Fatalf("want one file per day, got %v", files)
	}
}

func TestRetentionDeletesOldDays(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	tr := newTrail(t, dir, c) // keeps 3 days
	for range 5 {
		record(t, tr, Entry{Actor: "1", Action: Check, Host: "h", Result: "ok"})
		c.t = c.t.AddDate(0, 0, 1)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "remote_desktop/audit/*.jsonl"))
	if len(files) != 3 || filepath.Base(files[0]) != "2026-03-03.jsonl" {
		t.Fatalf("after 5 days with retention 3: %v", files)
	}
}

func TestFullDayDropsNewestNotOldest(t *testing.T) {
	c := &clock{time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	tr := newTrail(t, t.TempDir(), c)
	tr.maxPerDay = 5
	record(t, tr, Entry{Actor: "1", Action: Kill, User: "first", Result: "ok"})
	for i := range 20 {
		record(t, tr, Entry{Actor: "1", Action: SessionViewed, User: fmt.Sprint(i), Result: "ok"})
	}
	all := query(t, tr, Filter{Limit: 100})
	if len(all) != 5 || all[4].User != "first" {
		t.Fatalf("a flood replaced the oldest entry: %+v", all)
	}
}

func TestDamagedLineIsSkipped(t *testing.T) {
	dir := t.TempDir()
	c := &clock{time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	tr := newTrail(t, dir, c)
	record(t, tr, Entry{Actor: "1", Action: Kill, User: "7", Result: "ok"})
	f := filepath.Join(dir, "remote_desktop/audit/2026-03-01.jsonl")
	data, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(data, []byte("{not json\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	tr = newTrail(t, dir, c)
	record(t, tr, Entry{Actor: "1", Action: Undrain, Host: "h", Result: "ok"})
	if e := query(t, tr, Filter{}); len(e) != 2 || e[0].Action != Undrain || e[1].Action != Kill {
		t.Fatalf("%+v", e)
	}
}

func TestNilTrail(t *testing.T) {
	var tr *Trail
	if err := tr.Record(context.Background(), Entry{Action: Kill}); err != nil {
		t.Fatal(err)
	}
	if e := query(t, tr, Filter{}); len(e) != 0 {
		t.Fatal(e)
	}
}
