package holder

// This file holds the ops, one method each: store, get, take, delete,
// list, and the bulk dump and load, with the access checks and registry
// guards they share. Each audits its request (audit.go) and sends its reply
// (deliver.go).

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"go.uber.org/zap"

	"github.com/fdholder/fdholder/internal/proto"
	"github.com/fdholder/fdholder/internal/sockfd"
)

// store holds fd, which it owns from now on, under req.Name: it is closed
// on every refusal, and the registry owns it once held.
func (c *conn) store(req *proto.Request, fd *sockfd.FD) bool {
	if fd == nil {
		err := proto.Errorf(proto.CodeBadDescriptors, "no descriptor attached; store carries exactly one")
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	info, err := inspect(fd)
	if err == nil {
		err = c.room(fd)
	}
	if err != nil {
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	e, err := c.s.reg.Store(req.Name, fd, StoreOptions{Info: info, Owner: c.peer.Owner(), TTL: req.TTL,
		Replace: req.Flags&proto.FlagReplace != 0, Guard: c.storeGuard(req.Op, c.peer.UID)})
	c.audit(req.Op, req.Name, err)
	if err != nil {
		return c.replyErr(req.Op, err)
	}
	return c.reply(&proto.Reply{Op: req.Op, Entry: e})
}

// get passes a duplicate of the entry's descriptor; the entry stays held.
func (c *conn) get(req *proto.Request) bool {
	h, err := c.s.reg.Get(req.Name)
	if err != nil {
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	_, ok := c.passEntry(req, h)
	h.Release()
	return ok
}

// take passes the entry's descriptor and stops holding it, or holds it
// again if the reply was not delivered.
func (c *conn) take(req *proto.Request) bool {
	h, err := c.s.reg.Take(req.Name, c.ownerGuard(req.Op))
	if err != nil {
		c.audit(req.Op, req.Name, err)
		return c.replyErr(req.Op, err)
	}
	delivered, ok := c.passEntry(req, h)
	if !delivered {
		// The descriptor did not reach the peer: keep holding it.
		restored := c.s.reg.Restore(h)
		c.s.log.Warn("take not delivered", c.peerFields(zap.String("op", "take"),
			zap.String("name", req.Name), zap.Bool("restored", restored))...)
		return ok
	}
	h.Release()
	return true
}

// delete stops holding an entry and closes its descriptor.
func (c *conn) delete(req *proto.Request) bool {
	err := c.s.reg.Delete(req.Name, c.ownerGuard(req.Op))
	c.audit(req.Op, req.Name, err)
	if err != nil {
		return c.replyErr(req.Op, err)
	}
	return c.reply(&proto.Reply{Op: req.Op})
}

// passEntry encodes and passes the reply to a get or take of h (see pass);
// a reply that cannot be encoded is neither delivered nor ok.
func (c *conn) passEntry(req *proto.Request, h Handle) (delivered, ok bool) {
	out, encoded := c.encode(c.out[:0], &proto.Reply{Op: req.Op, Entry: *h.Entry()})
	if !encoded {
		return false, false
	}
	c.out = out
	return c.pass(req.Op, req.Name, out, h.FD(), nil)
}

// list replies with one page of the entries the peer may both list and
// get, visiting only the names under the policy's literal prefixes.
func (c *conn) list(req *proto.Request) bool {
	var visible func(*proto.Entry) bool
	var prefixes []string
	if !c.privileged {
		// list shows the entries the peer may both list and get.
		acc := c.s.access.Load().Access
		if sc, ok := acc.(ListScope); ok {
			if ps, all := sc.ListPrefixes(&c.peer); !all {
				prefixes = ps
				if prefixes == nil {
					prefixes = []string{} // none: nothing to visit
				}
			}
		}
		visible = func(e *proto.Entry) bool {
			owner := ownerOf(e)
			return acc.Allow(AccessRequest{Peer: &c.peer, Op: proto.OpList, Name: e.Name, Owner: &owner}).Allowed &&
				acc.Allow(AccessRequest{Peer: &c.peer, Op: proto.OpGet, Name: e.Name, Owner: &owner}).Allowed
		}
	}
	b := getPage()
	defer putPage(b)
	page, more := c.s.reg.List(b.entries[:0], ListOptions{After: req.Name, Prefixes: prefixes, Visible: visible})
	b.entries = page
	c.audit(req.Op, "", nil)
	r := proto.Reply{Op: req.Op, Entries: page}
	if more {
		r.Flags = proto.FlagMore
	}
	return c.replyIn(&b.out, &r)
}

// check asks the Access whether the peer may do op on name (owner: see
// AccessRequest) and returns the error to reply with if not.
func (c *conn) check(op proto.Op, name string, owner *Owner) error {
	if c.privileged {
		return nil
	}
	d := c.s.access.Load().Allow(AccessRequest{Peer: &c.peer, Op: op, Name: name, Owner: owner})
	if d.Allowed {
		return nil
	}
	return denied(&c.peer, op, d)
}

// ownerGuard returns the registry guard that checks op against the owner
// of the entry it acts on, under the registry's lock.
func (c *conn) ownerGuard(op proto.Op) EntryGuard {
	if c.privileged {
		return nil
	}
	return func(e *proto.Entry) error {
		owner := ownerOf(e)
		return c.check(op, e.Name, &owner)
	}
}

// inspect asks the kernel what fd is, for a store or a load. On error it
// closes fd and returns the error to reply with: only sockets are held.
func inspect(fd *sockfd.FD) (sockfd.Info, error) {
	info, err := sockfd.Inspect(fd)
	if err != nil {
		fd.Close()
		code := proto.CodeInternal
		if errors.Is(err, sockfd.ErrNotSocket) {
			code = proto.CodeNotSocket
		}
		return info, &proto.Error{Code: code, Message: fmt.Sprintf("%v; only sockets are held", err)}
	}
	return info, nil
}

// room makes sure the holder has room for one more descriptor; if not, it
// closes fd and returns the error to reply with.
func (c *conn) room(fd *sockfd.FD) error {
	if err := c.s.fdRoom(fd); err != nil {
		fd.Close()
		return err
	}
	return nil
}

// storeGuard vets a store or load (op) of an entry owned by uid under the
// registry's lock: a replace needs the right to act on the old entry's
// owner, and the entry limits must hold for uid.
func (c *conn) storeGuard(op proto.Op, uid uint32) StoreGuard {
	og := c.ownerGuard(op)
	return func(old *proto.Entry, after Counts) error {
		if old != nil && og != nil {
			if err := og(old); err != nil {
				return err
			}
		}
		return c.s.storeLimits(uid, c.privileged, old == nil, after)
	}
}

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
		owner := ownerOf(e)
		return c.authorizeTransfer(proto.OpDump, e.Name, &owner) == nil
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
	owner := ownerOf(&e)
	if err := c.authorizeTransfer(proto.OpLoad, e.Name, &owner); err != nil {
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
