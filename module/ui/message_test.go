package ui

import (
	"strings"
	"testing"
)

func TestLinksAndMessagePage(t *testing.T) {
	links := []Link{{Name: "Tasks", URL: "/tasks"}, {Name: "Rules <&>", URL: "https://ctf.example/rules"}}
	page := render(t, PlayerPage, PageData{Prefix: "/rd", SiteName: "Hack The Desk", Links: links})
	mustContain(t, page, `<a class="nav-link" href="/tasks" data-testid="nav-link">Tasks</a>`)
	mustContain(t, page, `href="https://ctf.example/rules" data-testid="nav-link">Rules &lt;&amp;&gt;</a>`)
	if strings.Contains(page, "/challenges") {
		t.Error("configured links did not replace the default ones")
	}
	if def := render(t, PlayerPage, PageData{}); !strings.Contains(def, `href="/challenges"`) || !strings.Contains(def, `href="/scoreboard"`) {
		t.Error("default links missing")
	}

	msg := render(t, MessagePage, PageData{Prefix: "/rd", SiteName: "Hack The Desk", Status: 403, Message: "that desktop is <not> yours"})
	mustContain(t, msg, `>Hack The Desk</a>`)
	mustContain(t, msg, `class="navbar"`)
	mustContain(t, msg, `href="/rd/static/app.css?v=`)
	mustContain(t, msg, `data-status="403"`)
	mustContain(t, msg, `that desktop is &lt;not&gt; yours`)
	mustContain(t, msg, `href="/rd" data-testid="message-link">Back to Remote Desktop</a>`)
	if strings.Contains(msg, "message.js") {
		t.Error("message page loads a page script that does not exist")
	}
}
