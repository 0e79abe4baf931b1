package holder

import (
	"path"
	"strings"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// authorizeTransfer is the one place that decides whether the peer may
// dump (op proto.OpDump: receive the entry named name with its descriptor
// and metadata) or load (proto.OpLoad: hold an entry under name with the
// owner and times it claims, owner). Both move descriptors in bulk, and a
// load sets metadata the holder would otherwise take from the kernel, so
// they are asked about separately from get and store: the Access sees
// op OpDump or OpLoad (the policy of internal/policy decides both as its
// "transfer" op, like take: others' entries need any_owner). Root and the
// holder's uid may always. It may be called under the registry's lock.
func (c *conn) authorizeTransfer(op proto.Op, name string, owner *Owner) error {
	return c.check(op, name, owner)
}

// dump replies with one page of the entries whose names sort after
// req.Name and match req.Pattern, each with a duplicate of its descriptor:
// at most proto.MaxBatchEntries, within proto.MaxReplySize. Entries the
// peer may not transfer are left out.
func (c *conn) dump(req *proto.Request) bool {
	if _, err := path.Match(req.Pattern, ""); err != nil {
		err = proto.Errorf(proto.CodeBadRequest, "pattern %q: %v", req.Pattern, err)
		c.audit(req.Op, "", err)
		return c.replyErr(req.Op, err)
	}
	match := func(e *proto.Entry) bool {
		if req.Pattern != "" {
			if ok, _ := path.Match(req.Pattern, e.Name); !ok {
				return false
			}
		}
		return c.authorizeTransfer(proto.OpDump, e.Name, &Owner{UID: e.UID, GID: e.GID, PID: e.PID}) == nil
	}
	// Only the names under the pattern's literal beginning can match it.
	var prefixes []string
	if i := strings.IndexAny(req.Pattern, `*?[\`); i != 0 && req.Pattern != "" {
		if i < 0 {
			i = len(req.Pattern)
		}
		prefixes = []string{req.Pattern[:i]}
	}
	held, more := c.s.reg.Page(ListOptions{After: req.Name, Prefixes: prefixes, Visible: match}, proto.MaxBatchEntries)
	b := getPage()
	defer putPage(b)
	r := proto.Reply{Op: req.Op, Entries: b.entries[:0]}
	fds := make([]*sockfd.FD, len(held))
	for i, h := range held {
		r.Entries = append(r.Entries, *h.Entry())
		fds[i] = h.FD()
	}
	b.entries = r.Entries
	if more {
		r.Flags = proto.FlagMore
	}
	ok := false
	if out, encoded := c.encode(b.out[:0], &r); encoded {
		b.out = out
		_, ok = c.pass(req.Op, req.Pattern, out, nil, fds)
	}
	for _, h := range held {
		h.Release()
	}
	return ok
}

// load holds each entry of req with its descriptor (fds[i] goes with
// req.Entries[i]) and the owner and times it carries; the network, address
// and listening state come from the kernel, not from the request. It takes
// ownership of fds. The reply has one result per entry.
func (c *conn) load(req *proto.Request, fds []*sockfd.FD) bool {
	if len(fds) != len(req.Entries) {
		sockfd.CloseAll(fds)
		err := proto.Errorf(proto.CodeBadDescriptors, "%d entries but %d descriptors attached", len(req.Entries), len(fds))
		c.audit(req.Op, "", err)
		return c.replyErr(req.Op, err)
	}
	replace := req.Flags&proto.FlagReplace != 0
	results := make([]proto.Result, len(fds))
	for i, e := range req.Entries {
		err := c.loadOne(e, fds[i], replace)
		fds[i] = nil
		c.audit(req.Op, e.Name, err)
		if err != nil {
			pe := protoError(err)
			results[i] = proto.Result{Code: pe.Code, Message: pe.Message}
		}
	}
	return c.reply(&proto.Reply{Op: req.Op, Results: results})
}

// loadOne holds one entry of a load; it takes ownership of fd.
func (c *conn) loadOne(e proto.Entry, fd *sockfd.FD, replace bool) error {
	if err := proto.ValidateName(e.Name); err != nil {
		fd.Close()
		return err
	}
	owner := &Owner{UID: e.UID, GID: e.GID, PID: e.PID}
	if err := c.authorizeTransfer(proto.OpLoad, e.Name, owner); err != nil {
		fd.Close()
		return err
	}
	info, err := inspect(fd)
	if err != nil {
		return err
	}
	e.Network, e.Address, e.Listening = info.Network, info.Address, info.Listening
	if e.StoredAt.IsZero() {
		fd.Close()
		return proto.Errorf(proto.CodeBadRequest, "no stored time")
	}
	if err := c.room(fd); err != nil {
		return err
	}
	_, err = c.s.reg.Load(e, fd, StoreOptions{Replace: replace, Guard: c.storeGuard(proto.OpLoad, e.UID)})
	return err
}
