package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/fdholder/fdholder"
)

// listCmd is "list [--json | --names]"; "list --watch" is a watchCmd (watch.go).
type listCmd struct {
	json  bool
	names bool // one name a line: what shell completion reads
}

func parseList(args []string) (command, error) {
	const cmd = "list"
	c := &listCmd{}
	w := &watchCmd{}
	var watch bool
	fs := newFlagSet(cmd)
	fs.BoolVar(&c.json, "json", false, "")
	fs.BoolVar(&c.names, "names", false, "")
	fs.BoolVar(&watch, "watch", false, "")
	fs.DurationVar(&w.interval, "interval", 0, "")
	if err := parseFlags(fs, cmd, args); err != nil {
		return nil, err
	}
	if c.json && c.names {
		return nil, usagef(cmd, "--json and --names exclude each other")
	}
	if err := wantArgs(cmd, fs.Args(), 0, "no arguments"); err != nil {
		return nil, err
	}
	if !watch {
		if w.interval != 0 {
			return nil, usagef(cmd, "--interval needs --watch")
		}
		return c, nil
	}
	return parseWatch(cmd, c, w)
}

func (c *listCmd) run(ctx context.Context, a *app) error {
	rctx, cancel := a.request(ctx)
	defer cancel()
	client, err := a.dial(rctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	entries, err := client.List(rctx)
	if err != nil {
		return err
	}
	switch {
	case c.json:
		return writeJSON(a.stdout, entries)
	case c.names:
		return writeNames(a.stdout, entries)
	}
	return writeTable(a.stdout, entries, time.Local)
}

// writeNames writes the entries' names, one a line. Names never contain a
// newline (fdholder.NameRule), so the output splits safely on lines.
func writeNames(w io.Writer, entries []fdholder.Entry) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, e := range entries {
		bw.WriteString(e.Name)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// tableTime is how the table shows times: local, to the second, sortable.
const tableTime = "2006-01-02 15:04:05"

// writeTable writes entries as an aligned table with a header line, times
// in loc. The output is buffered: tabwriter writes each cell on its own,
// which unbuffered would be a write(2) per cell (eight per entry).
func writeTable(w io.Writer, entries []fdholder.Entry, loc *time.Location) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	tw := tabwriter.NewWriter(bw, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNETWORK\tADDRESS\tLISTEN\tQUEUED\tOWNER\tSTORED\tEXPIRES")
	for _, e := range entries {
		listen := "no"
		if e.Listening {
			listen = "yes"
		}
		queued := "-"
		if e.HasQueue {
			queued = fmt.Sprintf("%d/%d", e.Queued, e.Backlog)
		}
		expires := "-"
		if !e.ExpiresAt.IsZero() {
			expires = e.ExpiresAt.In(loc).Format(tableTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n",
			e.Name, e.Network, orDash(e.Address), listen, queued,
			e.OwnerUID, e.OwnerPID, e.StoredAt.In(loc).Format(tableTime), expires)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	// An address is the kernel's and may hold anything a path can: keep
	// the table one line per entry.
	q := strconv.Quote(s)
	if q[1:len(q)-1] != s {
		return q
	}
	return s
}

// jsonTime is the JSON form of a time: RFC 3339 in UTC, always with nine
// fractional digits so that consumers see a fixed width.
const jsonTime = "2006-01-02T15:04:05.000000000Z07:00"

// jsonEntry is one element of "list --json". Its keys are an interface for
// scripts: add keys, never rename or remove one.
type jsonEntry struct {
	Name      string  `json:"name"`
	Network   string  `json:"network"`
	Address   string  `json:"address"`
	Listening bool    `json:"listening"`
	OwnerUID  uint32  `json:"owner_uid"`
	OwnerGID  uint32  `json:"owner_gid"`
	OwnerPID  int32   `json:"owner_pid"`
	StoredAt  string  `json:"stored_at"`
	ExpiresAt string  `json:"expires_at,omitempty"` // only for an entry that expires
	Queued    *uint32 `json:"queued,omitempty"`     // only for TCP listeners
	Backlog   *uint32 `json:"backlog,omitempty"`    // only for TCP listeners
}

// writeJSON writes entries as an indented JSON array: [] when there are none.
func writeJSON(w io.Writer, entries []fdholder.Entry) error {
	out := make([]jsonEntry, 0, len(entries))
	for _, e := range entries {
		j := jsonEntry{
			Name: e.Name, Network: e.Network, Address: e.Address, Listening: e.Listening,
			OwnerUID: e.OwnerUID, OwnerGID: e.OwnerGID, OwnerPID: e.OwnerPID,
			StoredAt: e.StoredAt.UTC().Format(jsonTime),
		}
		if !e.ExpiresAt.IsZero() {
			j.ExpiresAt = e.ExpiresAt.UTC().Format(jsonTime)
		}
		if e.HasQueue {
			q, b := e.Queued, e.Backlog
			j.Queued, j.Backlog = &q, &b
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
