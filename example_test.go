package fdholder_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"

	"github.com/fdholder/fdholder"
	"github.com/fdholder/fdholder/internal/holder"
)

// A service gets its listener through the holder. The first run binds the
// address and hands the holder a copy; every later run, after a deploy, a
// crash or a restart, gets the very same socket back, and the connections
// that arrived in between are waiting in its accept queue.
func Example() {
	path := startHolder() // in production: fdholderd, and Dial(ctx, "")
	ctx := context.Background()

	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ln, err := c.Listen(ctx, "web", "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go srv.Serve(ln)
	first := ln.Addr().String()
	srv.Close() // closes ln; the holder's copy stays open

	// The restarted service asks again and gets the same socket.
	ln, err = c.Listen(ctx, "web", "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println("same socket after restart:", ln.Addr().String() == first)
	// Output: same socket after restart: true
}

// A server that binds its own port is brought under the holder while it
// runs: Adopt copies its listener out of its descriptor table and stores it.
// Here the server is this very process; in production pid is another
// process's, such as the MainPID systemd reports for the service.
func ExampleClient_Adopt() {
	path := startHolder()
	ctx := context.Background()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	legacy, err := net.Listen("tcp", "127.0.0.1:0") // the server's own socket
	if err != nil {
		log.Fatal(err)
	}
	defer legacy.Close()
	sel := fdholder.SocketSelector{Network: "tcp", Address: legacy.Addr().String()}
	e, _, err := c.Adopt(ctx, "legacy", os.Getpid(), sel, fdholder.StoreOptions{})
	if err != nil {
		log.Fatal(err) // errors.Is(err, fdholder.ErrPtraceDenied), ErrNoMatch...
	}
	fmt.Println("held:", e.Name, e.Network, e.Address == legacy.Addr().String(), e.Listening)
	// Output: held: legacy tcp true true
}

// startHolder runs a holder in this process, on a fresh socket, as
// fdholderd would, and returns the socket's path.
func startHolder() string {
	dir, err := os.MkdirTemp("", "fdholder-example")
	if err != nil {
		log.Fatal(err)
	}
	path := filepath.Join(dir, "fdholder.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		log.Fatal(err)
	}
	srv := holder.NewServer(holder.NewRegistry(holder.RegistryOptions{}), holder.ServerOptions{})
	go srv.Serve(context.Background(), ln)
	return path
}

// A program that only passes a held socket on, to a child process as its
// descriptor 3 here (the systemd way: LISTEN_FDS=1), takes it with GetFD:
// no *os.File, so no registration with the Go runtime's netpoller. The
// caller owns the FD and closes it once the child has its own copy.
func ExampleClient_GetFD() {
	path := startHolder()
	ctx := context.Background()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ListenAndStore(ctx, "web", "tcp", "127.0.0.1:0", fdholder.StoreOptions{}); err != nil {
		log.Fatal(err)
	}

	fd, e, err := c.GetFD(ctx, "web")
	if err != nil {
		log.Fatal(err)
	}
	defer fd.Close()
	// ForkExec dup2s each of Files onto its index in the child, clearing
	// close-on-exec there.
	pid, err := syscall.ForkExec("/bin/sh", []string{"sh", "-c", `test "$LISTEN_FDS" = 1 && test -S /proc/self/fd/3`},
		&syscall.ProcAttr{Env: []string{"LISTEN_FDS=1"}, Files: []uintptr{0, 1, 2, uintptr(fd.Fd())}})
	if err != nil {
		log.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Network, "socket passed on:", ws.ExitStatus() == 0)
	// Output: tcp socket passed on: true
}
