//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package unpack

import "golang.org/x/sys/unix"

const ioctlGetTermios = unix.TIOCGETA
