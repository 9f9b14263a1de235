// A module of its own, so that building the tiny server never depends on the
// state of the project's go.mod (and needs nothing but the standard library).
module rd-tiny

go 1.19
