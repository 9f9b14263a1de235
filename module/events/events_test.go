package events

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestRingKeepsNewest(t *testing.T) {
	l := New(3, nil)
	for i := 0; i < 5; i++ {
		l.Emit(Event{Type: HostCheck, Message: fmt.Sprint(i)})
	}
	got := l.Recent(0)
	if len(got) != 3 || got[0].Message != "2" || got[2].Message != "4" || got[2].ID != 5 {
		t.Fatalf("Recent = %+v", got)
	}
	if got := l.Recent(2); len(got) != 2 || got[0].Message != "3" {
		t.Fatalf("Recent(2) = %+v", got)
	}
	if got := l.Since(3); len(got) != 2 || got[0].ID != 4 {
		t.Fatalf("Since(3) = %+v", got)
	}
}

func TestSubscribeReplaysThenStreams(t *testing.T) {
	l := New(10, nil)
	l.Emit(Event{Type: SessionQueued})
	l.Emit(Event{Type: SessionCreated})
	s, replay := l.Subscribe("t", 1, 4)
	defer s.Cancel()
	if len(replay) != 1 || replay[0].Type != SessionCreated {
		t.Fatalf("replay = %+v", replay)
	}
	l.Emit(Event{Type: SessionReady})
	if e := <-s.C; e.Type != SessionReady || e.ID != 3 {
		t.Fatalf("live = %+v", e)
	}
}

// A listener that stops reading is removed; the others keep receiving and
// Emit never blocks.
func TestSlowSubscriberIsRemoved(t *testing.T) {
	l := New(100, nil)
	slow, _ := l.Subscribe("slow", 0, 2)
	fast, _ := l.Subscribe("fast", 0, 100)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 50; i++ {
			l.Emit(Event{Type: HostCheck})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit blocked on a slow listener")
	}
	n := 0
	for range slow.C { // closed after its buffer filled
		n++
	}
	if n != 2 {
		t.Errorf("slow listener got %d events before removal, want 2", n)
	}
	if len(fast.C) != 50 {
		t.Errorf("fast listener got %d events, want 50", len(fast.C))
	}
	if l.Listeners() != 1 {
		t.Errorf("Listeners = %d, want 1", l.Listeners())
	}
	fast.Cancel()
	fast.Cancel() // twice is fine
}

func TestFailingListenerIsRemoved(t *testing.T) {
	l := New(10, nil)
	var mu sync.Mutex
	var seen []string
	stopOK := l.Listen("ok", func(e Event) error {
		mu.Lock()
		seen = append(seen, e.Type)
		mu.Unlock()
		return nil
	})
	defer stopOK()
	failed := make(chan struct{})
	l.Listen("bad", func(e Event) error { close(failed); return errors.New("boom") })
	panicked := make(chan struct{})
	l.Listen("panics", func(e Event) error { close(panicked); panic("boom") })
	l.Emit(Event{Type: SessionCreated})
	<-failed
	<-panicked
	deadline := time.Now().Add(5 * time.Second)
	for l.Listeners() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if l.Listeners() != 1 {
		t.Fatalf("Listeners = %d, want 1", l.Listeners())
	}
	l.Emit(Event{Type: SessionReady})
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 2 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("healthy listener saw %v", seen)
}

func TestConcurrentEmit(t *testing.T) {
	l := New(500, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				l.Emit(Event{Type: HostCheck})
				l.Recent(10)
			}
		}()
	}
	wg.Wait()
	got := l.Recent(0)
	if len(got) != 500 || got[499].ID != 1600 {
		t.Fatalf("got %d events, last id %d", len(got), got[len(got)-1].ID)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID != got[i-1].ID+1 {
			t.Fatalf("ids out of order at %d", i)
		}
	}
}

// A Listen callback that falls behind (Caddy's event-bus bridge behind a
// slow handler) misses events, which is counted and logged, but keeps
// running and receives what comes after.
func TestLaggingListenerKeepsRunning(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	l := New(10, zap.New(core))
	entered, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(released) }) }
	var n atomic.Int64
	last := make(chan string, 1)
	stop := l.Listen("bridge", func(e Event) error {
		if n.Add(1) == 1 {
			close(entered)
			<-released // a slow handler
		}
		if e.Message == "after" {
			last <- e.Message
		}
		return nil
	})
	defer stop()
	defer release() // before stop, which waits for the handler
	l.Emit(Event{Type: HostCheck})
	<-entered
	const extra = 10
	for i := 0; i < listenBuffer+extra; i++ {
		l.Emit(Event{Type: HostCheck})
	}
	if l.Listeners() != 1 {
		t.Fatal("the lagging listener was removed")
	}
	release()
	for deadline := time.Now().Add(10 * time.Second); n.Load() < 1+listenBuffer && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // until it has caught up
	}
	l.Emit(Event{Type: HostCheck, Message: "after"})
	select {
	case <-last:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener never got the event emitted after it caught up")
	}
	if got, want := n.Load(), int64(1+listenBuffer+1); got != want {
		t.Errorf("listener got %d events, want %d (%d dropped)", got, want, extra)
	}
	warns := logs.FilterMessageSnippet("dropping events").FilterField(zap.String("listener", "bridge")).All()
	if len(warns) != 1 {
		t.Fatalf("%d 'dropping events' warnings, want 1 (rate-limited): %v", len(warns), logs.All())
	}
}
