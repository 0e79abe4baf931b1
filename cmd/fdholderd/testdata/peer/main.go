// Command peer is a client of fdholderd for the tests, run as another uid:
// it does one operation and reports the outcome in its exit status.
//
//	peer SOCKET store NAME [replace]   bind 127.0.0.1:0 and store the listener
//	peer SOCKET get|take NAME          print the entry's name and owner uid
//	peer SOCKET delete NAME
//	peer SOCKET list                   print the names, one per line
//	peer SOCKET transfer DEST [GLOB]   copy entries to the holder at DEST;
//	                                   print "copied N", then each refused name
//
// Exit status: 0 ok, 3 not found, 4 already held, 5 permission denied,
// 6 unreachable, 7 limit reached, 1 anything else (on stderr).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/fdholder/fdholder"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer SOCKET OP [NAME [replace]]")
		return 2
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
