// A module of its own, like rd-tiny's: the standard library only.
module rd-evil

go 1.19
