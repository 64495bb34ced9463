// Command client is the Go twin of ../client.c, for the cgroup-mode tests: a client
// written the ordinary Go way, with net.Dialer, which the preload library cannot
// reach because the Go runtime makes its system calls itself.
//
//	client [--before SPEC] [--after SPEC] [--send] [--wait] HOST PORT
//
// It keeps Go's defaults: the net package turns SO_KEEPALIVE on and sets a 15 s idle
// time and interval right after connect. SPEC, the output lines and the exit status
// are those of client.c (see its header).
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// TCP_USER_TIMEOUT is not in Go 1.19's syscall package.
const tcpUserTimeout = 18

type option struct {
	name         string
	level, which int
}

var options = []option{
	{"keepalive", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
	{"idle", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
	{"intvl", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
	{"cnt", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
	{"user_timeout", syscall.IPPROTO_TCP, tcpUserTimeout},
}

func fail(step string, err error) {
	errno := syscall.EINVAL
	if e, ok := err.(syscall.Errno); ok {
		errno = e
	} else if op, ok := err.(*net.OpError); ok {
		if sys, ok := op.Err.(*os.SyscallError); ok {
			if e, ok := sys.Err.(syscall.Errno); ok {
				errno = e
			}
		}
	}
	fmt.Printf("failed %s errno=%d\n", step, int(errno))
	os.Exit(1)
}

// setOptions sets each name=value of spec on fd, in order.
func setOptions(fd uintptr, spec string) error {
	for _, item := range strings.Split(spec, ",") {
		name, value, found := strings.Cut(item, "=")
		n, err := strconv.Atoi(value)
		if !found || err != nil {
			return syscall.EINVAL
		}
		known := false
		for _, o := range options {
			if o.name == name {
				known = true
				if err := syscall.SetsockoptInt(int(fd), o.level, o.which, n); err != nil {
					return err
				}
			}
		}
		if !known {
			return syscall.EINVAL
		}
	}
	return nil
}

func report(fd uintptr) string {
	line := "connected"
	for _, o := range options {
		if v, err := syscall.GetsockoptInt(int(fd), o.level, o.which); err == nil {
			line += fmt.Sprintf(" %s=%d", o.name, v)
		} else {
			line += fmt.Sprintf(" %s=-", o.name)
		}
	}
	return line
}

// control runs f on the socket's descriptor and returns the first error.
func control(conn syscall.RawConn, f func(fd uintptr) error) error {
	var inner error
	if err := conn.Control(func(fd uintptr) { inner = f(fd) }); err != nil {
		return err
	}
	return inner
}

func main() {
	var before, after string
	wait, send := false, false
	args := os.Args[1:]
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		switch {
		case args[0] == "--wait":
			wait = true
		case args[0] == "--send":
			send = true
		case args[0] == "--before" && len(args) > 1:
			before, args = args[1], args[1:]
		case args[0] == "--after" && len(args) > 1:
			after, args = args[1], args[1:]
		default:
			fail("usage", syscall.EINVAL)
		}
		args = args[1:]
	}
	if len(args) != 2 {
		fail("usage", syscall.EINVAL)
	}
	dialer := net.Dialer{}
	if before != "" {
		// Control runs after socket() and before connect().
		dialer.Control = func(_, _ string, conn syscall.RawConn) error {
			return control(conn, func(fd uintptr) error { return setOptions(fd, before) })
		}
	}
	// Go dials an IPv4-mapped literal over AF_INET, as it does any IPv4 address.
	conn, err := dialer.Dial("tcp", net.JoinHostPort(args[0], args[1]))
	if err != nil {
		fail("connect", err)
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		fail("connect", err)
	}
	if after != "" {
		if err := control(raw, func(fd uintptr) error { return setOptions(fd, after) }); err != nil {
			fail("setsockopt", err)
		}
	}
	var line string
	control(raw, func(fd uintptr) error { line = report(fd); return nil })
	fmt.Println(line)
	if send {
		// One line on standard input, then one byte into a path the test has cut.
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil && err != io.EOF {
			fail("read", err)
		}
		if _, err := conn.Write([]byte("x")); err != nil {
			fail("send", err)
		}
	}
	if !wait {
		return
	}
	buffer := make([]byte, 256)
	n, err := conn.Read(buffer)
	switch {
	case n > 0:
		fmt.Println("data")
	case err == nil || errors.Is(err, io.EOF):
		fmt.Println("eof")
	default:
		var errno syscall.Errno
		if op, ok := err.(*net.OpError); ok {
			if sys, ok := op.Err.(*os.SyscallError); ok {
				errno, _ = sys.Err.(syscall.Errno)
			}
		}
		fmt.Printf("error errno=%d\n", int(errno))
	}
}
