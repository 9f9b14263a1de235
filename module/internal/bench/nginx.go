package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// nginxConf is the seed's architecture: nginx in front, every desktop
// request authorized by an auth_request subrequest to the module's
// /remote-desktop/api/auth-check, which names the container in X-VNC-Host
// and X-VNC-Port. The subrequest goes over kept-alive connections (an
// upstream block); the container cannot (its address is a variable), as in
// the seed.
const nginxConf = `# written by the benchmark (module/internal/bench)
daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;

	map $http_upgrade $connection_upgrade { default upgrade; '' close; }

	upstream rd_auth {
		server 127.0.0.1:%[3]d;
		keepalive 64;
	}

	server {
		listen 127.0.0.1:%[2]d;

		location ~ ^/remote-desktop/vnc/(?<rd_user>[0-9]+)(?<rd_rest>/.*)$ {
			auth_request /_rd_auth;
			auth_request_set $vnc_host $upstream_http_x_vnc_host;
			auth_request_set $vnc_port $upstream_http_x_vnc_port;
			proxy_pass http://$vnc_host:$vnc_port$rd_rest$is_args$args;
			proxy_http_version 1.1;
			proxy_set_header Host $vnc_host:$vnc_port;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection $connection_upgrade;
			proxy_set_header Cookie "";
			proxy_read_timeout 1h;
		}

		location = /_rd_auth {
			internal;
			proxy_pass http://rd_auth/remote-desktop/api/auth-check;
			proxy_pass_request_body off;
			proxy_set_header Content-Length "";
			proxy_set_header X-User-ID $rd_user;
			# The browser's own Host, as an operator's nginx sends it: the
			# auth-check compares the websocket's Origin with it.
			proxy_set_header Host $http_host;
			proxy_set_header Upgrade "";
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
`

// Nginx is an nginx master process with its own config in a temp dir.
type Nginx struct {
	Port int
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartNginx runs nginx on 127.0.0.1:port in front of the module's
// auth-check on 127.0.0.1:caddyPort. Stop it with Stop.
func StartNginx(dir string, port, caddyPort int) (*Nginx, error) {
	if err := os.Chmod(dir, 0o755); err != nil { // workers must reach tmp/
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port, caddyPort)), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("nginx", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &Nginx{Port: port, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(n.done) }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-n.done:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			s, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
			return nil, fmt.Errorf("nginx exited at start:\n%s%s", s, b)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return n, nil
		}
		if time.Now().After(deadline) {
			n.Stop()
			return nil, fmt.Errorf("nginx did not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop asks nginx to quit (SIGTERM to its process group), then kills it
// after 10s.
func (n *Nginx) Stop() {
	if n == nil || n.cmd.Process == nil {
		return
	}
	pgid := n.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-n.done
	}
}

// ErrorLog is nginx's error log so far.
func (n *Nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "error.log"))
	return string(b)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
