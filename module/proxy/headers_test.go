package proxy

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFilteredWriterOnEveryStatus(t *testing.T) {
	hostile := func(h http.Header) {
		for _, k := range []string{"Set-Cookie", "Service-Worker-Allowed", "Clear-Site-Data", "Refresh", "Location",
			"Content-Security-Policy", "Access-Control-Allow-Origin", "Link", "X-Evil", "Sec-WebSocket-Extensions"} {
			h[k] = []string{"evil"}
		}
		h["Sec-WebSocket-Accept"] = []string{"acc"} // non-canonical, as Caddy's proxy writes it
		h.Set("Upgrade", "websocket")
		h.Set("Content-Type", "text/html")
	}
	// 101, through a real server so that Hijack goes through Unwrap.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "Caddy") // set before the proxy: kept
		fw := FilterResponse(w)
		hostile(fw.Header())
		fw.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(fw).Hijack()
		if err != nil {
			t.Errorf("hijack through the filter: %v", err)
			return
		}
		_, _ = brw.WriteString("tunnel")
		_ = brw.Flush()
		conn.Close()
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k := range resp.Header {
		switch k {
		case "Upgrade", "Connection", "Sec-Websocket-Accept", "Server", "Date":
		default:
			t.Errorf("101 carries %s", k)
		}
	}
	if resp.Header.Get("Server") != "Caddy" || resp.Header.Get("Sec-Websocket-Accept") != "acc" {
		t.Errorf("101 lost what it needs: %v", resp.Header)
	}
	if rest, _ := br.ReadString('\n'); rest != "tunnel" {
		t.Errorf("tunnel bytes %q", rest)
	}

	// Any other status: content headers only, sandboxed; 1xx: nothing.
	early := FilterResponse(httptest.NewRecorder())
	hostile(early.Header())
	early.WriteHeader(http.StatusEarlyHints)
	if len(early.Header()) != 0 || early.wrote {
		t.Errorf("103 keeps %v (final status written: %v)", early.Header(), early.wrote)
	}
	rec := httptest.NewRecorder()
	fw := FilterResponse(rec)
	hostile(fw.Header())
	fw.Header().Set("Trailer", "X-T")
	_, _ = fw.Write([]byte("body"))
	fw.Header().Set(http.TrailerPrefix+"X-T", "evil")
	fw.Finish()
	h := rec.Result().Header
	if h.Get("Set-Cookie") != "" || h.Get("X-Evil") != "" || h.Get("Location") != "" || h.Get("Trailer") != "" {
		t.Errorf("hostile headers passed: %v", h)
	}
	if !strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox") || h.Get("Content-Type") != "text/html" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("200 not sandboxed or lost its type: %v", h)
	}
	if len(rec.Result().Trailer) > 0 {
		t.Errorf("trailers passed: %v", rec.Result().Trailer)
	}
}

func TestForContainerKeepsOnlyAllowedHeaders(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/remote-desktop/vnc/7/websockify", nil)
	for k, v := range map[string]string{"Referer": "http://x/", "User-Agent": "viewer", "X-Forwarded-For": "1.2.3.4",
		"X-Real-Ip": "1.2.3.4", "Forwarded": "for=1.2.3.4", "Accept-Language": "fr", "Sec-Websocket-Extensions": "permessage-deflate",
		"Sec-Websocket-Key": "k", "Upgrade": "websocket", "Origin": "http://x"} {
		r.Header.Set(k, v)
	}
	out := ForContainer(r, "/websockify")
	for _, k := range []string{"Referer", "X-Forwarded-For", "X-Real-Ip", "Forwarded", "Accept-Language", "Sec-Websocket-Extensions"} {
		if out.Header.Get(k) != "" {
			t.Errorf("%s reaches the container", k)
		}
	}
	if out.Header.Get("User-Agent") != "" || out.Header.Get("Sec-Websocket-Key") != "k" || out.Header.Get("Upgrade") != "websocket" {
		t.Errorf("headers: %v", out.Header)
	}
}
