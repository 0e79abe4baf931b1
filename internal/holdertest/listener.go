package holdertest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/fdholder/fdholder"
)

// Listener gets the listener held as name from the holder at path, as a
// restarted service does, through the public client. The caller closes it;
// the holder's copy stays open.
func Listener(t testing.TB, path, name string) net.Listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := fdholder.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, _, err := c.Get(ctx, name)
	if err != nil {
		t.Fatalf("get %q: %v", name, err)
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
