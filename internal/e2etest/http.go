package e2etest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Request is a whole HTTP request; the server closes the connection after
// its reply.
const Request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

// ReadReply reads the reply to Request on c and checks that it is the
// app's: 200 with the body "ok\n".
func ReadReply(c net.Conn, timeout time.Duration) error {
	_, err := readReply(c, timeout)
	return err
}

// Get sends Request to addr on a new connection and checks the reply as
// ReadReply does; it returns the reply's header.
func Get(addr string, timeout time.Duration) (http.Header, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, Request); err != nil {
		return nil, err
	}
	return readReply(c, timeout)
}

func readReply(c net.Conn, timeout time.Duration) (http.Header, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read reply body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		return nil, fmt.Errorf("reply %q with body %q, want 200 with %q", resp.Status, body, "ok\n")
	}
	return resp.Header, nil
}
