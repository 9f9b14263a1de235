// rd-tiny: a stand-in for a library Debian links into noVNC from /usr/share/javascript.
