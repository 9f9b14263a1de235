// Package remotedesktop is the Caddy layer of the remote desktop module.
package remotedesktop
