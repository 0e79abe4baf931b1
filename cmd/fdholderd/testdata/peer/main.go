// Command peer is a client of fdholderd for the tests, run as another uid:
// it does one operation and reports the outcome in its exit status.
//
//	peer SOCKET store NAME [replace]   bind 127.0.0.1:0 and store the listener
//	peer SOCKET get|take NAME          print the entry's name and owner uid
//	peer SOCKET delete NAME
//	peer SOCKET list                   print the names, one per line
//	peer SOCKET transfer DEST [GLOB]   copy entries to the holder at DEST;
//	                                   print "copied N", then each refused name
//	peer SOCKET flood get|dump NAME CONNS PER
//	                                   open CONNS connections, send PER gets
//	                                   of NAME (dumps of the glob NAME) on
//	                                   each and read nothing; once every
//	                                   connection has a reply waiting or is
//	                                   closed, print "flooding", and exit
//	                                   when stdin closes
//	peer SOCKET spam NAME N            get NAME N times on one connection,
//	                                   reading every reply; print how many
//	                                   were refused
//
// Exit status: 0 ok, 3 not found, 4 already held, 5 permission denied,
// 6 unreachable, 7 limit reached, 1 anything else (on stderr).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/proto"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer SOCKET OP [NAME [replace]]")
		return 2
	}
	switch args[1] {
	case "flood":
		return flood(args[0], args[2:])
	case "spam":
		return spam(args[0], args[2:])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := fdholder.Dial(ctx, args[0])
	if err != nil {
		return report(err)
	}
	defer c.Close()
	name := ""
	if len(args) > 2 {
		name = args[2]
	}
	switch args[1] {
	case "store":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return report(err)
		}
		defer ln.Close()
		_, err = c.Store(ctx, name, ln.(*net.TCPListener), fdholder.StoreOptions{Replace: len(args) > 3 && args[3] == "replace"})
		return report(err)
	case "get", "take":
		get := c.Get
		if args[1] == "take" {
			get = c.Take
		}
		f, e, err := get(ctx, name)
		if err != nil {
			return report(err)
		}
		f.Close()
		fmt.Println(e.Name, e.OwnerUID)
		return 0
	case "delete":
		return report(c.Delete(ctx, name))
	case "transfer":
		dst, err := fdholder.Dial(ctx, name)
		if err != nil {
			return report(err)
		}
		defer dst.Close()
		opts := fdholder.TransferOptions{}
		if len(args) > 3 {
			opts.Names = args[3]
		}
		res, err := c.Transfer(ctx, dst, opts)
		if err != nil {
			return report(err)
		}
		fmt.Println("copied", res.Copied)
		for _, f := range res.Failed {
			fmt.Println(f.Name)
		}
		if len(res.Failed) > 0 {
			return report(res.Failed[0].Err)
		}
		return 0
	case "list":
		es, err := c.List(ctx)
		if err != nil {
			return report(err)
		}
		for _, e := range es {
			fmt.Println(e.Name)
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown op %q\n", args[1])
	return 2
}

func report(err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, err)
	switch {
	case errors.Is(err, fdholder.ErrNotFound):
		return 3
	case errors.Is(err, fdholder.ErrExists):
		return 4
	case errors.Is(err, fdholder.ErrPermission):
		return 5
	case errors.Is(err, fdholder.ErrUnreachable):
		return 6
	case errors.Is(err, fdholder.ErrLimit):
		return 7
	}
	return 1
}

// flood is a peer that asks and never reads (issue 8, defect 1).
func flood(path string, args []string) int {
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: peer SOCKET flood get|dump NAME CONNS PER")
		return 2
	}
	conns, err1 := strconv.Atoi(args[2])
	per, err2 := strconv.Atoi(args[3])
	req := proto.Request{Op: proto.OpGet, Name: args[1]}
	if args[0] == "dump" {
		req = proto.Request{Op: proto.OpDump, Pattern: args[1]}
	}
	msg, err3 := proto.AppendRequest(nil, &req)
	if err := errors.Join(err1, err2, err3); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var fds []unix.PollFd
	for range conns {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			return 1
		}
		for range per {
			// A full queue or a holder that closed the connection ends
			// the sends on this one.
			if unix.Sendmsg(fd, msg, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL) != nil {
				break
			}
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	// Wait until every connection has a reply waiting (or was closed): the
	// holder has answered each at least once.
	for i := range fds {
		for {
			n, err := unix.Poll(fds[i:i+1], 20000)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				fmt.Fprintln(os.Stderr, "no reply on connection", i, err)
				return 1
			}
			break
		}
	}
	fmt.Println("flooding")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// spam asks again and again, reading each refusal (issue 8, defect 10).
func spam(path string, args []string) int {
	n, err := strconv.Atoi(args[1])
	if len(args) != 2 || err != nil {
		fmt.Fprintln(os.Stderr, "usage: peer SOCKET spam NAME N")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		return report(err)
	}
	defer c.Close()
	refused := 0
	for range n {
		f, _, err := c.Get(ctx, args[0])
		if err == nil {
			f.Close()
			continue
		}
		if !errors.Is(err, fdholder.ErrPermission) {
			return report(err)
		}
		refused++
	}
	fmt.Println("refused", refused)
	return 0
}
