package session

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/events"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
)

// pass looks at every host once: matches containers with records on hosts
// not yet listed, removes what must go, and starts refills within the
// bound.
func (p *WarmPool) pass() {
	opts := p.options()
	queued := p.deps.Queued()
	status := p.deps.Hosts.Status()
	configured := map[string]bool{}
	for _, st := range status {
		configured[st.Name] = true
		h, ok := p.deps.Hosts.Get(st.Name)
		if !ok {
			continue
		}
		p.mu.Lock()
		listed := p.listed[st.Name]
		p.mu.Unlock()
		if !listed {
			if st.Health == hosts.Healthy {
				p.listHost(h, opts)
			}
			continue
		}
		p.fillHost(h, st, opts, queued)
	}
	// Desktops of hosts a reload removed: their engine is closed; they are
	// forgotten like sessions whose host is gone.
	p.mu.Lock()
	for h := range p.claimed {
		if !configured[h] {
			delete(p.claimed, h)
		}
	}
	var gone []*warmEntry
	for _, e := range p.desks {
		if !configured[e.d.Host] && e.state != warmClaiming && e.state != warmRemoving {
			delete(p.desks, e.d.ID)
			gone = append(gone, e)
		}
	}
	p.mu.Unlock()
	for _, e := range gone {
		p.deleteRecord(e.d.ID)
	}
}

func (p *WarmPool) fillHost(h *hosts.Host, st hosts.Status, opts Options, queued int) {
	hc := h.Config()
	usable := st.Health == hosts.Healthy && !st.Drained
	target := 0
	if usable {
		target = hc.Warm
	}
	spec := warmSpecHash(hc, opts)
	limit := warmMaxStarting
	if queued > 0 || p.deps.ColdInFlight(st.Name) > 0 {
		limit = 1 // players' cold starts come first; the pool still refills
	}
	p.mu.Lock()
	var stale []*warmEntry
	replaced, removed := 0, 0
	ready, starting := 0, 0
	reason := ""
	for _, e := range p.desks {
		if e.d.Host != st.Name {
			continue
		}
		switch e.state {
		case warmReady:
			why := ""
			switch {
			case st.Drained:
				why = "host drained"
			case st.Health != hosts.Healthy:
				why = "host unhealthy"
			case e.d.Spec != spec:
				why = "image or limits changed"
			case ready >= target:
				why = "pool shrank"
			}
			if why == "" {
				ready++
				continue
			}
			e.state, e.why = warmRemoving, why
			stale = append(stale, e)
			if e.d.Spec != spec && usable {
				replaced++
			} else {
				removed++
			}
			reason = why
		case warmStale:
			e.state = warmRemoving
			stale = append(stale, e)
		case warmStarting:
			starting++
		}
	}
	n := min(target-ready-starting-p.heldOffLocked(st.Name), limit-starting)
	p.mu.Unlock()

	for _, e := range stale {
		if !p.spawn("remove warm "+e.d.ID, func() { p.removeDesk(context.WithoutCancel(p.ctx), e, e.why) }) {
			break
		}
	}
	switch {
	case replaced > 0:
		p.deps.Events.Emit(events.Event{Type: events.WarmReplaced, Host: st.Name,
			Message: fmt.Sprintf("replacing %d warm desktop(s) on %s: image or limits changed", replaced, st.Name),
			Data:    map[string]any{"count": replaced}})
	case removed > 0:
		p.deps.Events.Emit(events.Event{Type: events.WarmRemoved, Host: st.Name,
			Message: fmt.Sprintf("removing %d warm desktop(s) on %s: %s", removed, st.Name, reason),
			Data:    map[string]any{"count": removed, "reason": reason}})
	}
	for range n {
		if p.deps.Hosts.AcquireOn(st.Name) != nil {
			return // full, or it left rotation meanwhile
		}
		id := newID()
		e := &warmEntry{state: warmStarting, d: WarmDesk{ID: id, Host: st.Name, Name: ContainerName(opts.Instance, warmUser, id),
			PubHostname: hc.PubHostname, Password: NewPassword(), Spec: spec, CreatedAt: p.deps.Clock.Now().UTC()}}
		p.mu.Lock()
		p.desks[id] = e
		p.mu.Unlock()
		if !p.spawn("warm "+id, func() { p.start(h, hc, e, opts) }) {
			p.mu.Lock()
			delete(p.desks, id)
			p.mu.Unlock()
			p.deps.Hosts.Release(st.Name)
			return
		}
	}
}

// heldOffLocked is how many of host's refills wait for warmRefillHoldoff
// after their claim.
func (p *WarmPool) heldOffLocked(host string) int {
	now, times := p.deps.Clock.Now(), p.claimed[host]
	i := 0
	for i < len(times) && now.Sub(times[i]) >= warmRefillHoldoff {
		i++
	}
	if i == len(times) {
		delete(p.claimed, host)
		return 0
	}
	p.claimed[host] = times[i:]
	return len(times) - i
}

// start makes one warm desktop and waits for its noVNC. Whatever fails,
// what was made is removed (or stays the pool's to remove), never left.
func (p *WarmPool) start(h *hosts.Host, hc config.Host, e *warmEntry, opts Options) {
	p.mu.Lock()
	d := e.d
	p.mu.Unlock()
	spec := containerSpec(&Session{ID: d.ID, User: warmUser, Password: d.Password}, hc, opts.Container, opts.Instance, p.deps.Clock.Now())
	spec.Name = d.Name
	delete(spec.Labels, LabelUser)
	spec.Labels[LabelWarm] = "true"
	spec.Labels[LabelWarmSpec] = d.Spec
	bind, err := hc.Bind(p.ctx, nil)
	if err != nil {
		p.discard(e, fmt.Errorf("warm desktop on %s: %w", h.Name(), err))
		return
	}
	spec.BindAddress = bind
	rctx, cancel := context.WithTimeout(p.ctx, runTimeout)
	c, err := p.deps.Runtime(h).Run(rctx, spec)
	cancel()
	if err == nil && c.Ports[NoVNCPort] == 0 {
		err = fmt.Errorf("port %d was not published", NoVNCPort)
	}
	if err != nil {
		p.mu.Lock()
		e.d.ContainerID = c.ID
		p.mu.Unlock()
		p.discard(e, fmt.Errorf("start warm desktop on %s: %w", h.Name(), err))
		return
	}
	p.mu.Lock()
	e.d.ContainerID, e.d.Port, e.d.VNCPort = c.ID, c.Ports[NoVNCPort], c.Ports[VNCPort]
	d = e.d
	p.mu.Unlock()
	if err := p.deps.Store.SaveWarm(context.WithoutCancel(p.ctx), d); err != nil {
		p.discard(e, fmt.Errorf("save warm desktop record: %w", err))
		return
	}
	p.becomeReady(e, d, opts)
}

// becomeReady waits for the desktop to answer and makes it claimable. On
// shutdown it stays as it is: recorded, adopted on the next start.
func (p *WarmPool) becomeReady(e *warmEntry, d WarmDesk, opts Options) {
	if !p.waitAnswer(d, opts) {
		if p.ctx.Err() != nil {
			return
		}
		p.discard(e, fmt.Errorf("warm desktop on %s did not answer /vnc.html within %v", d.Host, opts.ReadinessTimeout))
		return
	}
	p.mu.Lock()
	if e.state == warmStarting {
		e.state = warmReady
	}
	p.refills[d.Host]++
	p.empty[d.Host] = false
	p.mu.Unlock()
	p.deps.OnReady()
	p.Kick()
}

func (p *WarmPool) waitAnswer(d WarmDesk, opts Options) bool {
	ctx, cancel := context.WithTimeout(p.ctx, opts.ReadinessTimeout)
	defer cancel()
	url := "http://" + joinHostPort(d.PubHostname, d.Port) + "/vnc.html"
	for {
		if p.deps.Prober.Answers(ctx, url) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-p.deps.Clock.After(100 * time.Millisecond):
		}
	}
}

// discard removes a desktop that failed to become ready.
func (p *WarmPool) discard(e *warmEntry, err error) {
	if p.ctx.Err() == nil {
		p.deps.Logger.Warn("warm desktop failed", zap.String("host", e.d.Host), zap.Error(err))
	}
	p.mu.Lock()
	e.state = warmRemoving
	p.mu.Unlock()
	p.removeDesk(context.WithoutCancel(p.ctx), e, "")
}

// removeDesk removes a desktop's container (by ID, or by name when its
// creation did not say) and then forgets it: record, entry, host slot. If
// the host does not answer, it stays the pool's, marked for another try.
func (p *WarmPool) removeDesk(ctx context.Context, e *warmEntry, why string) {
	opts := p.options()
	p.mu.Lock()
	d := e.d
	p.mu.Unlock()
	if h, ok := p.deps.Hosts.Get(d.Host); ok {
		id := d.ContainerID
		if id == "" {
			id = d.Name
		}
		rctx, cancel := context.WithTimeout(ctx, opts.StopTimeout+30*time.Second)
		err := p.deps.Runtime(h).Remove(rctx, id, opts.StopTimeout)
		cancel()
		if err != nil {
			p.deps.Logger.Debug("remove warm desktop", zap.String("host", d.Host), zap.String("container", shortID(id)), zap.String("why", why), zap.Error(err))
			p.mu.Lock()
			if e.state == warmRemoving {
				e.state = warmStale
			}
			p.mu.Unlock()
			return
		}
	}
	p.mu.Lock()
	if p.desks[d.ID] == e {
		delete(p.desks, d.ID)
	}
	p.mu.Unlock()
	p.deleteRecord(d.ID)
	p.deps.Hosts.Release(d.Host)
}

func (p *WarmPool) deleteRecord(id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), 30*time.Second)
	defer cancel()
	if err := p.deps.Store.DeleteWarm(ctx, id); err != nil {
		p.deps.Logger.Error("delete warm desktop record", zap.String("id", id), zap.Error(err))
	}
}

// listHost matches the host's warm containers with the records loaded at
// start, once: a record whose container is there is checked again (it
// must still answer), a container with no record and no session is
// removed (a crash between making it and recording it), a record whose
// container is gone or now a session's is dropped with its slot.
func (p *WarmPool) listHost(h *hosts.Host, opts Options) {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	list, err := p.deps.Runtime(h).List(ctx, map[string]string{LabelManaged: "true", LabelInstance: opts.Instance, LabelWarm: "true"})
	cancel()
	if err != nil {
		if p.ctx.Err() == nil {
			p.deps.Logger.Warn("warm pool could not list containers", zap.String("host", h.Name()), zap.Error(err))
		}
		return
	}
	owned := map[string]bool{}
	for _, c := range list {
		owned[c.ID] = p.deps.Owned(c.ID)
	}
	byID := map[string]docker.Container{}
	for _, c := range list {
		byID[c.ID] = c
		byID[c.Labels[LabelSession]] = c // by warm id, for a record saved before its ID was known
	}
	p.mu.Lock()
	var check, drop []*warmEntry
	matched := map[string]bool{}
	for _, e := range p.desks {
		if e.d.Host != h.Name() || e.state != warmUnverified {
			continue
		}
		c, ok := byID[e.d.ContainerID]
		if !ok {
			c, ok = byID[e.d.ID]
		}
		if ok {
			matched[c.ID] = true
			e.d.ContainerID = c.ID
		}
		switch {
		case !ok || owned[c.ID]: // gone, or claimed before the record was deleted
			delete(p.desks, e.d.ID)
			drop = append(drop, e)
		case !c.Running:
			e.state, e.why = warmStale, "stopped"
		default:
			e.state = warmStarting
			check = append(check, e)
		}
	}
	var strays []docker.Container
	for _, c := range list {
		if !matched[c.ID] && !owned[c.ID] && !p.ownsLocked(h.Name(), c) {
			strays = append(strays, c)
		}
	}
	for _, c := range strays {
		p.strays[c.ID] = true // the pool's until removed: the reaper leaves them
	}
	p.listed[h.Name()] = true
	p.mu.Unlock()

	for _, e := range drop {
		p.deleteRecord(e.d.ID)
		p.deps.Hosts.Release(e.d.Host)
	}
	for _, e := range check {
		p.mu.Lock()
		d := e.d
		p.mu.Unlock()
		p.spawn("adopt warm "+d.ID, func() { p.becomeReady(e, d, opts) })
	}
	for _, c := range strays {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), opts.StopTimeout+30*time.Second)
		err := p.deps.Runtime(h).Remove(rctx, c.ID, opts.StopTimeout)
		cancel()
		if err != nil {
			p.deps.Logger.Warn("remove unrecorded warm desktop", zap.String("host", h.Name()), zap.String("container", shortID(c.ID)), zap.Error(err))
		}
		p.mu.Lock()
		delete(p.strays, c.ID) // gone, or the reaper's orphan from now on
		p.mu.Unlock()
	}
	if len(strays) > 0 {
		p.deps.Events.Emit(events.Event{Type: events.WarmRemoved, Level: "warn", Host: h.Name(),
			Message: fmt.Sprintf("removed %d warm desktop(s) on %s found without a record", len(strays), h.Name()),
			Data:    map[string]any{"count": len(strays), "reason": "no record"}})
	}
	if len(check) > 0 {
		p.deps.Logger.Info("warm desktops adopted", zap.String("host", h.Name()), zap.Int("count", len(check)))
	}
}

func (p *WarmPool) ownsLocked(host string, c docker.Container) bool {
	if p.strays[c.ID] {
		return true
	}
	for _, e := range p.desks {
		if e.d.Host != host {
			continue
		}
		if e.d.ContainerID == c.ID || (e.d.ContainerID == "" && e.d.ID == c.Labels[LabelSession]) {
			return true
		}
	}
	return false
}
