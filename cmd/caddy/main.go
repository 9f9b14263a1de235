// Command caddy is Caddy with its standard modules and the remote desktop
// module, the same binary `xcaddy build --with
// github.com/ctf-desktops/caddy-remote-desktop=.` produces.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/ctf-desktops/caddy-remote-desktop/module"
)

func main() {
	caddycmd.Main()
}
