package proto

import (
	"encoding/binary"
	"math"
	"time"
)

// Request is a client's request. docs/protocol.md gives its layout.
type Request struct {
	Op    Op
	Flags uint16 // FlagReplace on OpStore; no other flag is defined

	// Name is the entry the request is about. For OpList it is the cursor
	// instead: the page starts after this name, and "" starts at the top.
	Name string

	// TTL, on OpStore only, makes the entry expire this long after it is
	// stored; zero means never. It is carried in whole milliseconds.
	TTL time.Duration

	// Pattern, on OpDump only, selects the entries whose names match it
	// (path.Match); empty selects every entry. Name is the cursor.
	Pattern string

	// Entries, on OpLoad only, are the entries to hold, one per attached
	// descriptor, in the same order. Their queue figures are not sent.
	Entries []Entry
}

// Reply is the holder's answer to one request.
type Reply struct {
	Op    Op     // the request's op, without ReplyBit
	Flags uint16 // FlagMore on an OpList reply
	Code  Code

	// Message explains a failure; empty when Code is CodeOK.
	Message string

	// Entry describes the entry stored, got or taken (OpStore, OpGet,
	// OpTake with CodeOK).
	Entry Entry

	// Entries is one page of an OpList or OpDump reply, in name order. A
	// dump reply carries one descriptor per entry, in the same order.
	Entries []Entry

	// Results, in an OpLoad reply, says for each entry of the request, in
	// order, whether it is held now.
	Results []Result
}

// Result is the outcome of one entry of a load request: CodeOK, or a code
// and a message.
type Result struct {
	Code    Code
	Message string
}

// Err returns nil for CodeOK and an *Error otherwise.
func (r Result) Err() error {
	if r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// Err returns nil for a successful reply and an *Error otherwise.
func (r *Reply) Err() error {
	if r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// Entry describes one held descriptor.
type Entry struct {
	Name string

	// Network is tcp, tcp6, udp, udp6, unix, unixgram or unixpacket for the
	// sockets Go's net package knows, and a descriptive word otherwise.
	Network string

	// Address is the socket's local address: host:port, a path, @name for
	// an abstract Unix socket, or empty for an unbound one.
	Address string

	Listening bool // listen(2) was called on it (SO_ACCEPTCONN)

	// UID, GID and PID identify the process that stored the entry, from
	// SO_PEERCRED on its connection.
	UID, GID uint32
	PID      int32

	StoredAt  time.Time
	ExpiresAt time.Time // zero: never expires

	// HasQueue says Queued and Backlog are set: the entry is a TCP listener
	// and the reply is a list page (get and take do not spend a system call
	// on them).
	HasQueue bool
	Queued   uint32 // connections waiting in the accept queue (tcpi_unacked)
	Backlog  uint32 // the accept queue's limit (tcpi_sacked)
}

// Entry flag bits.
const (
	entryListening uint8 = 1 << 0
	entryQueue     uint8 = 1 << 1
	entryExpires   uint8 = 1 << 2
	entryKnown           = entryListening | entryQueue | entryExpires
)

// entryFixed is the size of an encoded Entry's fixed-size fields.
const entryFixed = 1 + 4 + 4 + 4 + 8 + 8 + 4 + 4

// EntrySize returns the number of bytes e takes in a reply.
func EntrySize(e *Entry) int {
	return 1 + len(e.Name) + 1 + len(e.Network) + 2 + len(e.Address) + entryFixed
}

// listFixed is the size of the count that starts an OpList reply body.
const listFixed = 2

// ListPageFits reports whether a list reply holding entries of the given
// total EntrySize fits in MaxReplySize.
func ListPageFits(entriesSize int) bool {
	return HeaderSize+listFixed+entriesSize <= MaxReplySize
}

func appendHeader(dst []byte, op Op, flags uint16, code Code) []byte {
	dst = append(dst, magic0, magic1, Version, byte(op))
	dst = binary.BigEndian.AppendUint16(dst, flags)
	return binary.BigEndian.AppendUint16(dst, uint16(code))
}

// AppendRequest appends the encoding of r to dst. It fails only if a field
// exceeds a protocol limit or the op or flags are unknown.
func AppendRequest(dst []byte, r *Request) ([]byte, error) {
	if !r.Op.valid() {
		return dst, Errorf(CodeUnknownOp, "unknown operation %d", uint8(r.Op))
	}
	if r.Flags&^FlagReplace != 0 || r.Flags != 0 && r.Op != OpStore && r.Op != OpLoad {
		return dst, Errorf(CodeBadRequest, "%s: unknown flags %#x", r.Op, r.Flags)
	}
	if r.Pattern != "" && r.Op != OpDump || len(r.Entries) > 0 && r.Op != OpLoad || r.Name != "" && r.Op == OpLoad {
		return dst, Errorf(CodeBadRequest, "%s: a field that goes with another op is set", r.Op)
	}
	if len(r.Pattern) > MaxPatternLen {
		return dst, Errorf(CodeTooLarge, "%s: pattern is %d bytes, the limit is %d", r.Op, len(r.Pattern), MaxPatternLen)
	}
	if r.Op == OpLoad && (len(r.Entries) == 0 || len(r.Entries) > MaxBatchEntries) {
		return dst, Errorf(CodeTooLarge, "load: %d entries; a batch holds 1 to %d", len(r.Entries), MaxBatchEntries)
	}
	if len(r.Name) > MaxNameLen {
		return dst, Errorf(CodeTooLarge, "%s: name is %d bytes, the limit is %d", r.Op, len(r.Name), MaxNameLen)
	}
	if r.TTL != 0 && r.Op != OpStore {
		return dst, Errorf(CodeBadRequest, "%s: a ttl goes with store only", r.Op)
	}
	if r.TTL < 0 || r.TTL%time.Millisecond != 0 {
		return dst, Errorf(CodeBadRequest, "store: ttl %v is not a whole, positive number of milliseconds", r.TTL)
	}
	start := len(dst)
	dst = appendHeader(dst, r.Op, r.Flags, CodeOK)
	if r.Op == OpLoad {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.Entries)))
		for i := range r.Entries {
			e := r.Entries[i]
			e.HasQueue, e.Queued, e.Backlog = false, 0, 0
			var err error
			if dst, err = appendEntry(dst, &e); err != nil {
				return dst[:start], err
			}
		}
		if len(dst)-start > MaxLoadRequestSize {
			return dst[:start], Errorf(CodeTooLarge, "load: request of %d bytes exceeds %d", len(dst)-start, MaxLoadRequestSize)
		}
		return dst, nil
	}
	dst = appendStr8(dst, r.Name)
	switch r.Op {
	case OpStore:
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.TTL/time.Millisecond))
	case OpDump:
		dst = appendStr8(dst, r.Pattern)
	}
	return dst, nil
}

// LoadRequestFits reports whether a load request holding entries of the
// given total EntrySize (without queue figures) fits in MaxLoadRequestSize.
func LoadRequestFits(entriesSize int) bool {
	return HeaderSize+2+entriesSize <= MaxLoadRequestSize
}

// maxTTL keeps a decoded TTL inside time.Duration.
const maxTTL = uint64(1<<63-1) / uint64(time.Millisecond)

// DecodeRequest decodes one request. Errors are *Error values whose code is
// the one to reply with.
func DecodeRequest(b []byte) (Request, error) { return DecodeRequestReuse(b, "") }

// DecodeRequestReuse is DecodeRequest, except that a name equal to prev
// comes back as prev itself rather than as a new copy: a connection that
// asks for the same name again and again then decodes without allocating.
// (Comparing string(b) == prev does not allocate.)
func DecodeRequestReuse(b []byte, prev string) (Request, error) {
	var r Request
	op, flags, code, body, err := decodeHeader(b)
	if err != nil {
		return r, err
	}
	if op&ReplyBit != 0 || !op.valid() {
		return r, Errorf(CodeUnknownOp, "unknown operation %d", uint8(op))
	}
	r.Op = op
	if code != CodeOK {
		return r, Errorf(CodeBadRequest, "%s: a request carries no status code", op)
	}
	if flags&^FlagReplace != 0 || flags != 0 && op != OpStore && op != OpLoad {
		return r, Errorf(CodeBadRequest, "%s: unknown flags %#x", op, flags)
	}
	r.Flags = flags
	d := decoder{b: body}
	if op == OpLoad {
		n := int(d.u16())
		if n == 0 || n > MaxBatchEntries {
			return r, Errorf(CodeTooLarge, "load: %d entries; a batch holds 1 to %d", n, MaxBatchEntries)
		}
		if n > len(d.b)/(entryFixed+4) {
			return r, Errorf(CodeBadRequest, "load: %d entries cannot fit in %d bytes", n, len(d.b))
		}
		r.Entries = make([]Entry, n)
		for i := range r.Entries {
			d.entry(&r.Entries[i])
			if r.Entries[i].HasQueue && d.err == nil {
				d.fail("entry %q: queue figures in a request", r.Entries[i].Name)
			}
		}
		if err := d.finish(op); err != nil {
			return r, err
		}
		return r, nil
	}
	r.Name = d.str8Reuse(prev)
	if op == OpDump {
		r.Pattern = d.str8()
	}
	if op == OpStore {
		ms := d.u64()
		if ms > maxTTL {
			return r, Errorf(CodeBadRequest, "store: ttl of %d ms is out of range", ms)
		}
		r.TTL = time.Duration(ms) * time.Millisecond
	}
	if err := d.finish(op); err != nil {
		return r, err
	}
	return r, nil
}

// PeekOp returns the op byte of a message without ReplyBit, or 0 if b is too
// short to have one. A holder uses it to address an error reply to a request
// it could not decode.
func PeekOp(b []byte) Op {
	if len(b) < 4 {
		return 0
	}
	return Op(b[3]) &^ ReplyBit
}

func decodeHeader(b []byte) (op Op, flags uint16, code Code, body []byte, err error) {
	if len(b) < 3 || b[0] != magic0 || b[1] != magic1 {
		return 0, 0, 0, nil, Errorf(CodeBadRequest, "not an fdholder message (bad magic)")
	}
	if b[2] != Version {
		return 0, 0, 0, nil, Errorf(CodeUnsupportedVersion,
			"unsupported protocol version %d: this end speaks version %d", b[2], Version)
	}
	if len(b) < HeaderSize {
		return 0, 0, 0, nil, Errorf(CodeBadRequest, "truncated header: %d bytes", len(b))
	}
	return Op(b[3]), binary.BigEndian.Uint16(b[4:]), Code(binary.BigEndian.Uint16(b[6:])), b[HeaderSize:], nil
}

// AppendReply appends the encoding of r to dst. It fails if a field exceeds
// a protocol limit or the result would exceed MaxReplySize.
//
// An error reply may carry any op: a holder answers a request it could not
// decode with the op byte that request had.
func AppendReply(dst []byte, r *Reply) ([]byte, error) {
	if !r.Op.valid() && r.Code == CodeOK {
		return dst, Errorf(CodeUnknownOp, "unknown operation %d", uint8(r.Op))
	}
	start := len(dst)
	dst = appendHeader(dst, r.Op|ReplyBit, r.Flags, r.Code)
	switch {
	case r.Code != CodeOK:
		if r.Flags != 0 {
			return dst[:start], Errorf(CodeInternal, "%s: an error reply carries no flags", r.Op)
		}
		msg := r.Message
		if len(msg) > MaxMessageLen {
			msg = msg[:MaxMessageLen]
		}
		dst = appendStr16(dst, msg)
	case r.Flags&^FlagMore != 0 || r.Flags != 0 && r.Op != OpList && r.Op != OpDump:
		return dst[:start], Errorf(CodeInternal, "%s: unknown reply flags %#x", r.Op, r.Flags)
	case r.Op == OpLoad:
		if len(r.Results) > MaxBatchEntries {
			return dst[:start], Errorf(CodeTooLarge, "load: %d results", len(r.Results))
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.Results)))
		for _, res := range r.Results {
			msg := res.Message
			if res.Code == CodeOK {
				msg = ""
			}
			if len(msg) > MaxMessageLen {
				msg = msg[:MaxMessageLen]
			}
			dst = binary.BigEndian.AppendUint16(dst, uint16(res.Code))
			dst = appendStr16(dst, msg)
		}
	case r.Op == OpStore, r.Op == OpGet, r.Op == OpTake:
		var err error
		if dst, err = appendEntry(dst, &r.Entry); err != nil {
			return dst[:start], err
		}
	case r.Op == OpList, r.Op == OpDump:
		if len(r.Entries) > 0xffff || r.Op == OpDump && len(r.Entries) > MaxBatchEntries {
			return dst[:start], Errorf(CodeTooLarge, "list: %d entries in one page", len(r.Entries))
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.Entries)))
		for i := range r.Entries {
			var err error
			if dst, err = appendEntry(dst, &r.Entries[i]); err != nil {
				return dst[:start], err
			}
		}
	}
	if len(dst)-start > MaxReplySize {
		return dst[:start], Errorf(CodeTooLarge, "%s: reply of %d bytes exceeds %d", r.Op, len(dst)-start, MaxReplySize)
	}
	return dst, nil
}

// DecodeReply decodes one reply. A reply from a holder of another protocol
// version fails with ErrUnsupportedVersion.
func DecodeReply(b []byte) (Reply, error) { return DecodeReplyName(b, "") }

// DecodeReplyName is DecodeReply for the reply to a request for name: an
// entry named name gets name itself, not a copy, so that a get's reply
// allocates only the strings the caller did not have.
func DecodeReplyName(b []byte, name string) (Reply, error) {
	var r Reply
	op, flags, code, body, err := decodeHeader(b)
	if err != nil {
		if len(b) >= 3 && b[0] == magic0 && b[1] == magic1 && b[2] != Version {
			return r, Errorf(CodeUnsupportedVersion,
				"unsupported protocol version: the holder speaks version %d, this client version %d", b[2], Version)
		}
		return r, err
	}
	if op&ReplyBit == 0 || code == CodeOK && !(op&^ReplyBit).valid() {
		return r, Errorf(CodeBadRequest, "reply has unknown operation %d", uint8(op))
	}
	r.Op, r.Flags, r.Code = op&^ReplyBit, flags, code
	d := decoder{b: body, name: name}
	switch {
	case code != CodeOK:
		if flags != 0 {
			return r, Errorf(CodeBadRequest, "%s: error reply with flags %#x", r.Op, flags)
		}
		r.Message = d.str16()
		if len(r.Message) > MaxMessageLen {
			d.fail("error message of %d bytes", len(r.Message))
		}
	case flags&^FlagMore != 0 || flags != 0 && r.Op != OpList && r.Op != OpDump:
		return r, Errorf(CodeBadRequest, "%s: unknown reply flags %#x", r.Op, flags)
	case r.Op == OpStore, r.Op == OpGet, r.Op == OpTake:
		d.entry(&r.Entry)
	case r.Op == OpLoad:
		n := int(d.u16())
		if n > MaxBatchEntries || n > len(d.b)/4 {
			return r, Errorf(CodeBadRequest, "load: %d results cannot fit in %d bytes", n, len(d.b))
		}
		if n > 0 {
			r.Results = make([]Result, n)
			for i := range r.Results {
				res := &r.Results[i]
				res.Code = Code(d.u16())
				res.Message = d.str16()
				if res.Code == CodeOK && res.Message != "" || len(res.Message) > MaxMessageLen {
					d.fail("load: result %d: message does not fit its code", i)
				}
			}
		}
	case r.Op == OpList, r.Op == OpDump:
		n := int(d.u16())
		if r.Op == OpDump && n > MaxBatchEntries {
			return r, Errorf(CodeBadRequest, "dump: %d entries in one page, the limit is %d", n, MaxBatchEntries)
		}
		// Each entry takes at least entryFixed+4 bytes: refuse a count the
		// body cannot hold before allocating for it.
		if n > len(d.b)/(entryFixed+4) {
			return r, Errorf(CodeBadRequest, "list: %d entries cannot fit in %d bytes", n, len(d.b))
		}
		if n > 0 {
			r.Entries = make([]Entry, n)
			for i := range r.Entries {
				d.entry(&r.Entries[i])
			}
		}
	}
	if err := d.finish(r.Op); err != nil {
		return r, err
	}
	return r, nil
}

func appendStr8(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

func appendStr16(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendEntry(dst []byte, e *Entry) ([]byte, error) {
	if len(e.Name) > MaxNameLen || len(e.Network) > 0xff || len(e.Address) > MaxMessageLen {
		return dst, Errorf(CodeTooLarge, "entry %q: a field exceeds its limit", e.Name)
	}
	var flags uint8
	if e.Listening {
		flags |= entryListening
	}
	if e.HasQueue {
		flags |= entryQueue
	}
	if !e.ExpiresAt.IsZero() {
		flags |= entryExpires
	}
	dst = appendStr8(dst, e.Name)
	dst = appendStr8(dst, e.Network)
	dst = appendStr16(dst, e.Address)
	dst = append(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, e.UID)
	dst = binary.BigEndian.AppendUint32(dst, e.GID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(e.PID))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(e.StoredAt)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(e.ExpiresAt)))
	if e.HasQueue {
		dst = binary.BigEndian.AppendUint32(dst, e.Queued)
		dst = binary.BigEndian.AppendUint32(dst, e.Backlog)
	} else {
		dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	return dst, nil
}

// MaxTime is the latest stored or expiry time an entry can have: times
// travel as Unix nanoseconds in a signed 64-bit field (and so are kept in
// the file descriptor store's metadata), whose last value is in April
// 2262. A later time would wrap to 1677.
var MaxTime = time.Unix(0, math.MaxInt64).UTC()

// CheckExpiry returns nil if an entry stored at stored with ttl expires no
// later than MaxTime, and an *Error of CodeTooLarge saying the longest ttl
// otherwise. Every store checks it, so that an expiry never wraps: list,
// transfer and an upgrade all see the time the store was given.
func CheckExpiry(stored time.Time, ttl time.Duration) error {
	longest := MaxTime.Sub(stored)
	if ttl <= longest {
		return nil
	}
	return Errorf(CodeTooLarge, "ttl %v is too long: the entry would expire after %s, the latest time the protocol carries; the longest ttl now is %v",
		ttl, MaxTime.Format(time.RFC3339), longest.Truncate(time.Hour))
}

// unixNano encodes a time; the zero time is 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// decoder reads fields from a message body. The first failure sticks; later
// reads return zero values, and finish reports it.
type decoder struct {
	b    []byte
	err  *Error
	name string // an entry name the caller holds already (DecodeReplyName)
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = Errorf(CodeBadRequest, format, args...)
	}
	d.b = nil
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated message: %d bytes missing", n-len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) str8() string { return string(d.take(int(d.u8()))) }

// str8Reuse is str8 that returns prev, not a copy, when the bytes equal it.
func (d *decoder) str8Reuse(prev string) string {
	p := d.take(int(d.u8()))
	if string(p) == prev {
		return prev
	}
	return string(p)
}
func (d *decoder) str16() string { return string(d.take(int(d.u16()))) }

// network is str8 for an entry's network, which is nearly always one of a
// few words (sockfd's names): those come back as constants, not copies.
func (d *decoder) network() string {
	p := d.take(int(d.u8()))
	for _, n := range commonNetworks {
		if string(p) == n {
			return n
		}
	}
	return string(p)
}

var commonNetworks = [...]string{"tcp", "tcp6", "udp", "udp6", "unix", "unixgram", "unixpacket"}

func (d *decoder) entry(e *Entry) {
	e.Name = d.str8Reuse(d.name)
	e.Network = d.network()
	e.Address = d.str16()
	flags := d.u8()
	e.UID = d.u32()
	e.GID = d.u32()
	e.PID = int32(d.u32())
	stored := int64(d.u64())
	expires := int64(d.u64())
	queued, backlog := d.u32(), d.u32()
	if d.err != nil {
		return
	}
	// Only the canonical encoding is accepted, so that decoding and
	// encoding again always gives the same bytes.
	switch {
	case flags&^entryKnown != 0:
		d.fail("entry %q: unknown flags %#x", e.Name, flags)
	case len(e.Address) > MaxMessageLen:
		d.fail("entry %q: address of %d bytes", e.Name, len(e.Address))
	case flags&entryExpires == 0 && expires != 0, flags&entryExpires != 0 && expires == 0:
		d.fail("entry %q: expiry flag and time disagree", e.Name)
	case flags&entryQueue == 0 && (queued != 0 || backlog != 0):
		d.fail("entry %q: queue figures without the queue flag", e.Name)
	}
	e.Listening = flags&entryListening != 0
	e.HasQueue = flags&entryQueue != 0
	e.StoredAt = fromUnixNano(stored)
	e.ExpiresAt = fromUnixNano(expires)
	e.Queued, e.Backlog = queued, backlog
}

func (d *decoder) finish(op Op) error {
	if d.err != nil {
		d.err.Message = op.String() + ": " + d.err.Message
		return d.err
	}
	if len(d.b) != 0 {
		return Errorf(CodeBadRequest, "%s: %d unexpected bytes after the message", op, len(d.b))
	}
	return nil
}
