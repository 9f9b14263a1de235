package remotedesktop

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/ui"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("remote_desktop", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("remote_desktop", parseHandlerDirective)
	// Right after the authentication handlers (basic_auth, forward_auth),
	// before encode, handle/route and the handlers that respond
	// (respond, reverse_proxy to CTFd): it serves only its own path and
	// passes everything else on, so no `order` line is needed, and its
	// event stream and websockets are never wrapped by encode.
	httpcaddyfile.RegisterDirectiveOrder("remote_desktop", httpcaddyfile.After, "forward_auth")
}

func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		return nil, d.Err("remote_desktop global option given twice; merge the blocks")
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "remote_desktop", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option block:
//
//	{
//	    remote_desktop {
//	        hosts_file   <path>              # the seed's hosts.yml
//	        host <hostname> {                # more hosts, inline (repeatable)
//	            user         <user>
//	            pub_hostname <address>
//	            docker_image <image>
//	            port         <ssh port>
//	            max_sessions <n>             # default 50; -1: no limit
//	            bind_address <ip>
//	            docker_socket <path>     # default /var/run/docker.sock
//	            docker_concurrency <n>       # Docker starts (and removals) in flight; default 8; -1: no limit
//	            warm         <n>             # warm pool size; default 0 (off)
//	        }
//	        memory_limit       <size>        # container_defaults
//	        shm_size           <size>
//	        resolution         <WxH>
//	        cpu_limit          <cpus>
//	        pids_limit         <n>
//	        publish_vnc
//	        tmp_size           <size>        # the /tmp tmpfs; the root is read-only
//	        writable_root
//	        initial_duration   <seconds|duration>   # session_defaults
//	        extension_duration <seconds|duration>
//	        max_extensions     <n>
//	        known_hosts        <path>
//	        ssh_key            <path>
//	        insecure_skip_host_key_check
//	        max_connections    <n>
//	        dial_timeout       <duration>
//	        reaper_interval    <duration>
//	        readiness_timeout  <duration>
//	        probe_interval     <duration>
//	        orphan_grace       <duration>
//	        event_log_size     <n>
//	        shutdown_policy    keep|destroy
//	        instance           <name>
//	        rate_limit         <burst> <interval> | off   # per player create/destroy
//	        audit_retention_days <days>
//	        egress             open|closed
//	        closed_ranges      <cidr>...
//	        open_ranges        <cidr>...
//	        isolation          enforce|warn
//	    }
//	}
//
// Durations of the session timers accept a plain number of seconds, as in
// hosts.yml, or a Go duration (1h, 20m).
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch key := d.Val(); key {
		case "hosts_file":
			err = stringArg(d, &a.HostsFile)
		case "host":
			err = a.unmarshalHost(d)
		case "memory_limit":
			err = stringArg(d, &a.ContainerDefaults.MemoryLimit)
		case "shm_size":
			err = stringArg(d, &a.ContainerDefaults.ShmSize)
		case "resolution":
			err = stringArg(d, &a.ContainerDefaults.Resolution)
		case "cpu_limit":
			var s string
			if err = stringArg(d, &s); err == nil {
				a.ContainerDefaults.CPULimit, err = strconv.ParseFloat(s, 64)
				if err != nil || a.ContainerDefaults.CPULimit <= 0 {
					err = d.Errf("cpu_limit: %q is not a positive number", s)
				}
			}
		case "pids_limit":
			err = intArg(d, &a.ContainerDefaults.PidsLimit)
		case "publish_vnc":
			a.ContainerDefaults.PublishVNC = true
			err = noArgs(d)
		case "tmp_size":
			err = stringArg(d, &a.ContainerDefaults.TmpSize)
		case "writable_root":
			a.ContainerDefaults.WritableRoot = true
			err = noArgs(d)
		case "initial_duration":
			err = secondsArg(d, &a.SessionDefaults.InitialDuration)
		case "extension_duration":
			err = secondsArg(d, &a.SessionDefaults.ExtensionDuration)
		case "max_extensions":
			var n int
			if err = intArg(d, &n); err == nil {
				a.SessionDefaults.MaxExtensions = &n
			}
		case "known_hosts":
			err = stringArg(d, &a.KnownHosts)
		case "ssh_key":
			err = stringArg(d, &a.SSHKey)
		case "insecure_skip_host_key_check":
			a.InsecureSkipHostKeyCheck = true
			err = noArgs(d)
		case "max_connections":
			err = intArg(d, &a.MaxConnections)
		case "dial_timeout":
			err = durationArg(d, &a.DialTimeout)
		case "reaper_interval":
			err = durationArg(d, &a.ReaperInterval)
		case "readiness_timeout":
			err = durationArg(d, &a.ReadinessTimeout)
		case "probe_interval":
			err = durationArg(d, &a.ProbeInterval)
		case "orphan_grace":
			err = durationArg(d, &a.OrphanGrace)
		case "instance":
			err = stringArg(d, &a.Instance)
		case "event_log_size":
			err = intArg(d, &a.EventLogSize)
		case "rate_limit":
			err = a.unmarshalRateLimit(d)
		case "audit_retention_days":
			err = intArg(d, &a.AuditRetentionDays)
		case "egress":
			err = stringArg(d, &a.Egress)
		case "closed_ranges":
			a.ClosedRanges = append(a.ClosedRanges, d.RemainingArgs()...)
			if len(a.ClosedRanges) == 0 {
				err = d.ArgErr()
			}
		case "open_ranges":
			a.OpenRanges = append(a.OpenRanges, d.RemainingArgs()...)
			if len(a.OpenRanges) == 0 {
				err = d.ArgErr()
			}
		case "isolation":
			err = stringArg(d, &a.Isolation)
		case "shutdown_policy":
			if err = stringArg(d, &a.ShutdownPolicy); err == nil && a.ShutdownPolicy != "keep" && a.ShutdownPolicy != "destroy" {
				err = d.Errf("shutdown_policy: %q is neither keep nor destroy", a.ShutdownPolicy)
			}
		default:
			return d.Errf("unrecognized remote_desktop option '%s'", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *App) unmarshalHost(d *caddyfile.Dispenser) error {
	var h config.Host
	if !d.NextArg() {
		return d.ArgErr()
	}
	h.Hostname = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "user":
			err = stringArg(d, &h.User)
		case "pub_hostname":
			err = stringArg(d, &h.PubHostname)
		case "docker_image":
			err = stringArg(d, &h.DockerImage)
		case "port":
			err = intArg(d, &h.Port)
		case "max_sessions":
			var v string
			if err = stringArg(d, &v); err == nil {
				if h.MaxSessions, err = strconv.Atoi(v); err != nil || h.MaxSessions < -1 {
					err = d.Errf("max_sessions: %q is not a whole number, or -1 for no limit", v)
				}
			}
		case "bind_address":
			err = stringArg(d, &h.BindAddress)
		case "docker_socket":
			err = stringArg(d, &h.DockerSocket)
		case "docker_concurrency":
			var v string
			if err = stringArg(d, &v); err == nil {
				if h.DockerConcurrency, err = strconv.Atoi(v); err != nil || h.DockerConcurrency < -1 {
					err = d.Errf("docker_concurrency: %q is not a whole number, or -1 for no limit", v)
				}
			}
		case "warm":
			err = intArg(d, &h.Warm)
		default:
			return d.Errf("unrecognized host option '%s'", key)
		}
		if err != nil {
			return err
		}
	}
	a.WorkspaceHosts = append(a.WorkspaceHosts, h)
	return nil
}

// Argument helpers: each consumes exactly the arguments of the current line.

func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func stringArg(d *caddyfile.Dispenser, out *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*out = d.Val()
	return noArgs(d)
}

func intArg(d *caddyfile.Dispenser, out *int) error {
	key := d.Val()
	var s string
	if err := stringArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return d.Errf("%s: %q is not a whole number", key, s)
	}
	*out = n
	return nil
}

func durationArg(d *caddyfile.Dispenser, out *caddy.Duration) error {
	key := d.Val()
	var s string
	if err := stringArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 {
		return d.Errf("%s: %q is not a duration (e.g. 30s, 5m)", key, s)
	}
	*out = caddy.Duration(dur)
	return nil
}

// secondsArg reads a session timer: seconds as in hosts.yml, or a duration.
func secondsArg(d *caddyfile.Dispenser, out *int) error {
	key := d.Val()
	var s string
	if err := stringArg(d, &s); err != nil {
		return err
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		*out = n
		return nil
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < time.Second || dur%time.Second != 0 {
		return d.Errf("%s: %q is not a positive whole number of seconds or a duration like 1h", key, s)
	}
	*out = int(dur / time.Second)
	return nil
}

func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler:
//
//	remote_desktop [<matcher>] {
//	    identity ctfd {
//	        url         <ctfd base url>
//	        admin_token <token>
//	        ...
//	    }
//	    identity caddy {
//	        admins <user id>...
//	    }
//	    path_prefix        <path>
//	    stream_close_delay <duration>
//	    allowed_origins    <scheme://host>...
//	    login_url          <path or URL>
//	    novnc_path         <path in the desktop image>
//	    novnc_root         <dir>
//	    unsafe_container_http
//	    brand              <the CTF's name>
//	    links {
//	        <name> <path or URL>
//	        ...
//	    }
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch key := d.Val(); key {
		case "identity":
			if h.IdentityRaw != nil {
				return d.Err("identity given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			var unm caddyfile.Unmarshaler
			unm, err = caddyfile.UnmarshalModule(d, "remote_desktop.identity."+name)
			if err == nil {
				h.IdentityRaw = caddyconfig.JSONModuleObject(unm, "source", name, nil)
			}
		case "path_prefix":
			err = stringArg(d, &h.PathPrefix)
		case "stream_close_delay":
			err = durationArg(d, &h.StreamCloseDelay)
		case "novnc_root":
			err = stringArg(d, &h.NoVNCRoot)
		case "novnc_path":
			err = stringArg(d, &h.NoVNCPath)
		case "unsafe_container_http":
			h.UnsafeContainerHTTP = true
			err = noArgs(d)
		case "login_url":
			err = stringArg(d, &h.LoginURL)
		case "brand":
			err = stringArg(d, &h.Brand)
		case "links":
			err = h.unmarshalLinks(d)
		case "allowed_origins":
			h.AllowedOrigins = append(h.AllowedOrigins, d.RemainingArgs()...)
			if len(h.AllowedOrigins) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized remote_desktop option '%s'", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalLinks reads a links block: one "<name> <url>" per line, in
// navbar order.
func (h *Handler) unmarshalLinks(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if !d.NextArg() {
			return d.Errf("links: %q needs a URL", name)
		}
		h.Links = append(h.Links, ui.Link{Name: name, URL: d.Val()})
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	if len(h.Links) == 0 {
		return d.Err("links: give at least one <name> <url> line")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
