package web

import (
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// Figures reads the live state the metrics' gauges export and the admin
// dashboard's figures show: one function for both, so they agree.
func Figures(sessions *session.Manager, orch *hosts.Orchestrator) metrics.Figures {
	var f metrics.Figures
	now := time.Now()
	list := sessions.List()
	pairs := make([][2]string, 0, len(list))
	for _, v := range list {
		host := v.Host
		if v.State == session.Queued {
			host = ""
			f.QueueOldest = max(f.QueueOldest, now.Sub(v.CreatedAt))
		}
		pairs = append(pairs, [2]string{string(v.State), host})
	}
	f.Sessions = metrics.CountSessions(pairs)
	for _, h := range orch.Status() {
		f.Hosts = append(f.Hosts, metrics.HostFigure{Name: h.Name, Health: string(h.Health),
			Drained: h.Drained, Active: h.Active, MaxSessions: h.MaxSessions})
	}
	f.Warm = sessions.WarmStatus()
	for _, h := range orch.Hosts() {
		e, ok := h.Engine.(*hosts.SSHEngine)
		if !ok {
			continue
		}
		st := e.Pool.Stats()
		f.SSH = append(f.SSH, metrics.SSHFigure{Host: h.Name(), Open: st.Open, Busy: st.Busy, Channels: st.Channels,
			Waiting: st.Waiting, Dialed: st.Dialed, DialFailures: st.DialFailures})
	}
	return f
}

// summary is the dashboard's figures.
func (s *Server) summary() metrics.Summary {
	return Figures(s.Sessions, s.Hosts).Summary()
}
