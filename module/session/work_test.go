package session

import (
	"context"
	"testing"
	"time"
)

// A lane hands its slots out in line order; a waiter that gives up leaves
// the line, and a slot handed to a waiter that gave up at that moment
// passes on; removals get twice the limit.
func TestWorkLanes(t *testing.T) {
	w := newWork()
	ctx := context.Background()
	a, _ := w.acquire(ctx, "h", startLane, 1, nil, nil)
	s1, s2, s3 := &Session{Host: "h"}, &Session{Host: "h"}, &Session{Host: "h"}
	t1 := w.enqueue("h", startLane, 1, s1)
	t2 := w.enqueue("h", startLane, 1, s2)
	t3 := w.enqueue("h", startLane, 1, s3)
	if w.position(s1) != 1 || w.position(s2) != 2 || w.position(s3) != 3 {
		t.Fatalf("positions %d %d %d", w.position(s1), w.position(s2), w.position(s3))
	}
	t2.cancel() // gave up while waiting: out of the line
	if w.position(s3) != 2 {
		t.Fatalf("after the second gave up, the third is at %d", w.position(s3))
	}
	var pos int
	done := make(chan *slot)
	go func() {
		sl, _ := t1.wait(ctx, func(p int) { pos = p })
		done <- sl
	}()
	time.Sleep(10 * time.Millisecond)
	a.release(-1)
	b := <-done
	if pos != 1 || w.position(s1) != 0 {
		t.Fatalf("the first waited at %d, and is still in line at %d", pos, w.position(s1))
	}
	// Handed over as it gave up: the slot goes on to the next in line.
	b.release(-1)
	t3.cancel()
	if _, held, waiting := w.stats("h", startLane); held != 0 || waiting != 0 {
		t.Fatalf("held %d, waiting %d after everyone left", held, waiting)
	}
	for range 4 {
		if _, err := w.acquire(ctx, "h", removeLane, 2, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if limit, held, waiting := w.stats("h", removeLane); limit != 4 || held != 4 || waiting != 0 {
		t.Fatalf("removal lane of a host with docker_concurrency 2: limit %d, held %d, waiting %d", limit, held, waiting)
	}
	// No limit at all.
	for range 100 {
		if _, err := w.acquire(ctx, "u", startLane, -1, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
}
