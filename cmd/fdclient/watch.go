package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdholder/fdholder"
)

// watchCmd is "list --watch [--interval DUR]": the entries again every
// interval, with each TCP listener's recent queue lengths, for a person
// watching a restart.
type watchCmd struct {
	interval time.Duration
}

// defaultWatchInterval is how often list --watch asks the holder.
const defaultWatchInterval = time.Second

// watchHistory is how many intervals the HISTORY column shows.
const watchHistory = 30

// The terminal's escape sequences (ECMA-48): cursor home, erase to the
// end of the line, erase to the end of the screen.
const (
	termHome      = "\x1b[H"
	termClearLine = "\x1b[K"
	termClear     = "\x1b[J"
)

// parseWatch checks the flags of list --watch; list's own flags (l) do
// not go with it.
func parseWatch(cmd string, l *listCmd, w *watchCmd) (command, error) {
	switch {
	case l.json:
		return nil, usagef(cmd, "--json and --watch exclude each other")
	case l.names:
		return nil, usagef(cmd, "--names and --watch exclude each other")
	case w.interval < 0:
		return nil, usagef(cmd, "negative --interval %v", w.interval)
	case w.interval == 0:
		w.interval = defaultWatchInterval
	case w.interval < minWatchInterval:
		return nil, usagef(cmd, "--interval %v is below %v", w.interval, minWatchInterval)
	}
	return w, nil
}

func (c *watchCmd) interruptible() {}

// minWatchInterval keeps a watch from becoming a load on the holder.
const minWatchInterval = 100 * time.Millisecond

func (c *watchCmd) run(ctx context.Context, a *app) error {
	rows, tty := terminalRows(a.stdout)
	hist := map[string][]uint32{}
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	var frame strings.Builder
	for drawn := false; ; drawn = true {
		entries, err := c.list(ctx, a)
		if ctx.Err() != nil {
			return nil // Ctrl-C (SIGINT) or SIGTERM: a watch ends so
		}
		if err != nil && drawn && errors.Is(err, context.DeadlineExceeded) {
			// Connected, but no reply within --timeout: the exit-code
			// table's "no answer within --timeout" (exit 1), not a holder
			// that went away (exit 6).
			return fmt.Errorf("list --watch: the holder stopped answering: %w", err)
		}
		if err != nil && drawn {
			return fmt.Errorf("list --watch: the holder went away: %w", err)
		}
		if err != nil {
			return fmt.Errorf("list --watch: %w", err)
		}
		hist = record(hist, entries)
		frame.Reset()
		fmt.Fprintf(&frame, "Every %v: fdclient list --watch (Ctrl-C ends)  %s\n\n", c.interval, time.Now().Format(tableTime))
		writeWatchTable(&frame, entries, hist)
		out := frame.String()
		if tty {
			out = inPlace(out, rows)
		} else {
			out += "\n"
		}
		if _, err := io.WriteString(a.stdout, out); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// list asks the holder for the entries, within --timeout. A failure ends
// the watch: the client re-dials once by itself when its connection
// breaks, so a failure is the holder's absence (it stopped, or its socket
// is gone: ErrUnreachable) or a holder that does not answer within
// --timeout (context.DeadlineExceeded), not a hiccup.
func (c *watchCmd) list(ctx context.Context, a *app) ([]fdholder.Entry, error) {
	rctx, cancel := a.request(ctx)
	defer cancel()
	client, err := a.dial(rctx)
	if err != nil {
		return nil, err
	}
	return client.List(rctx)
}

// inPlace turns a frame into what redraws it over the previous one on a
// terminal of rows lines: from the top left, each line erased to its end
// (the previous frame's line may have been longer), the frame cut to the
// screen (a longer one would scroll, and the next would be drawn below
// its top), and the rest of the screen erased.
func inPlace(frame string, rows int) string {
	lines := strings.Split(strings.TrimSuffix(frame, "\n"), "\n")
	if rows > 1 && len(lines) > rows-1 {
		more := len(lines) - (rows - 2)
		lines = append(lines[:rows-2], fmt.Sprintf("(%d more lines: a taller terminal shows them)", more))
	}
	var b strings.Builder
	b.WriteString(termHome)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString(termClearLine + "\n")
	}
	b.WriteString(termClear)
	return b.String()
}

// record appends each TCP listener's queue length to its history, keeping
// the last watchHistory; entries no longer held are dropped, and a new
// entry starts a history of its own.
func record(hist map[string][]uint32, entries []fdholder.Entry) map[string][]uint32 {
	next := make(map[string][]uint32, len(entries))
	for _, e := range entries {
		if !e.HasQueue {
			continue
		}
		h := append(hist[e.Name], e.Queued)
		if len(h) > watchHistory {
			h = h[len(h)-watchHistory:]
		}
		next[e.Name] = h
	}
	return next
}

// writeWatchTable writes the table of a watch: what list shows about the
// queue, its peak over the history, and the history itself.
func writeWatchTable(w io.Writer, entries []fdholder.Entry, hist map[string][]uint32) {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "NAME\tNETWORK\tADDRESS\tQUEUED\tPEAK\tHISTORY (last %d, oldest first)\n", watchHistory)
	for _, e := range entries {
		queued, peak, spark := "-", "-", "-"
		if h := hist[e.Name]; e.HasQueue && len(h) > 0 {
			queued = fmt.Sprintf("%d/%d", e.Queued, e.Backlog)
			peak = fmt.Sprint(maxOf(h))
			spark = sparkline(h)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Network, orDash(e.Address), queued, peak, spark)
	}
	if len(entries) == 0 {
		fmt.Fprintln(tw, "(nothing held)")
	}
	tw.Flush()
	bw.Flush()
}

func maxOf(h []uint32) uint32 {
	var m uint32
	for _, v := range h {
		m = max(m, v)
	}
	return m
}

// sparkBars are the levels of a sparkline, lowest first.
var sparkBars = []rune("▁▂▃▄▅▆▇█")

// sparkline draws h with one bar per value, scaled to the highest value
// shown: 0 is the lowest bar and any other value at least the second, so
// that a single waiting connection is visible.
func sparkline(h []uint32) string {
	top := maxOf(h)
	var b strings.Builder
	for _, v := range h {
		i := 0
		if v > 0 {
			i = 1 + int((uint64(v)*uint64(len(sparkBars)-2)+uint64(top)/2)/uint64(top))
		}
		b.WriteRune(sparkBars[i])
	}
	return b.String()
}

// terminalRows reports whether w is a terminal, and its height: the
// TIOCGWINSZ ioctl of tty_ioctl(4) succeeds only on a terminal. The
// descriptor is reached through SyscallConn, not Fd(), which would make it
// blocking. A terminal that reports no size has rows 0.
func terminalRows(w io.Writer) (rows int, tty bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	var ws *unix.Winsize
	var werr error
	if err := rc.Control(func(fd uintptr) { ws, werr = unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ) }); err != nil || werr != nil {
		return 0, false
	}
	return int(ws.Row), true
}
