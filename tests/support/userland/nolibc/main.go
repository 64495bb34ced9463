// nolibc: a Go program built as a position-independent executable without cgo
// (CGO_ENABLED=0 go build -buildmode=pie), as distributions and images often build
// Go: it has a program interpreter, so the dynamic loader preloads LD_PRELOAD into
// it, but no C library at all. It dials a TCP address, which it never reaches
// through the preloaded library (Go makes its own system calls), and says "started".
package main

import (
	"fmt"
	"net"
)

func main() {
	conn, err := net.Dial("tcp", "127.0.0.1:9")
	if err == nil {
		conn.Close()
	}
	fmt.Println("started")
}
