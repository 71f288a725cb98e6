// netprobe: a statically linked (CGO_ENABLED=0) test program for the kernel layer. Go makes its
// system calls directly, so no LD_PRELOAD layer can see them; the kernel layer must.
//
//	netprobe serve-tcp ADDR NAME   listen; print "listening LOCAL"; answer each connection with
//	                               "NAME peer=PEER local=LOCAL" (what accept and getsockname say)
//	netprobe get-tcp ADDR          connect; print the server's line and "client local=L remote=R"
//	netprobe serve-udp ADDR        print "listening LOCAL"; answer each datagram with "echo from=SRC"
//	netprobe udp-sendto ADDR       unconnected socket: send, print "reply from=SRC data=DATA"
//	netprobe udp-connected ADDR    connected socket: send, print "reply local=L remote=R data=DATA"
//	netprobe bind ADDR             bind TCP; print "bound LOCAL" or "error ERRNO"; exit
package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

func fail(err error) {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		fmt.Printf("error %d\n", int(errno))
	} else {
		fmt.Printf("error %v\n", err)
	}
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: netprobe MODE ADDR [NAME]")
		os.Exit(2)
	}
	mode, addr := os.Args[1], os.Args[2]
	deadline := time.Now().Add(20 * time.Second)
	switch mode {
	case "serve-tcp", "bind":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fail(err)
		}
		if mode == "bind" {
			fmt.Printf("bound %s\n", l.Addr())
			return
		}
		name := "server"
		if len(os.Args) > 3 {
			name = os.Args[3]
		}
		fmt.Printf("listening %s\n", l.Addr())
		for {
			c, err := l.Accept()
			if err != nil {
				fail(err)
			}
			fmt.Fprintf(c, "%s peer=%s local=%s\n", name, c.RemoteAddr(), c.LocalAddr())
			c.Close()
		}
	case "get-tcp":
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fail(err)
		}
		c.SetDeadline(deadline)
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print(line)
		fmt.Printf("client local=%s remote=%s\n", c.LocalAddr(), c.RemoteAddr())
	case "serve-udp":
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			fail(err)
		}
		fmt.Printf("listening %s\n", pc.LocalAddr())
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				fail(err)
			}
			pc.WriteTo([]byte(fmt.Sprintf("echo from=%s", from)), from)
		}
	case "udp-sendto":
		dest, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			fail(err)
		}
		pc, err := net.ListenUDP("udp4", nil)
		if err != nil {
			fail(err)
		}
		pc.SetDeadline(deadline)
		if _, err := pc.WriteTo([]byte("ping"), dest); err != nil {
			fail(err)
		}
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			fail(err)
		}
		fmt.Printf("reply from=%s data=%s\n", from, buf[:n])
	case "udp-connected":
		c, err := net.Dial("udp4", addr)
		if err != nil {
			fail(err)
		}
		c.SetDeadline(deadline)
		if _, err := c.Write([]byte("ping")); err != nil {
			fail(err)
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			fail(err)
		}
		fmt.Printf("reply local=%s remote=%s data=%s\n", c.LocalAddr(), c.RemoteAddr(), buf[:n])
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
}
