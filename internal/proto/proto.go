package proto

import (
	"errors"
	"fmt"

	"github.com/fdholder/fdholder/internal/sockfd"
)

// Version is the protocol version this package speaks. The first four bytes
// of every message (the magic and the version) keep their meaning in every
// version, so that two ends of different versions can always tell each other
// apart and answer "unsupported version" instead of misreading each other.
const Version = 1

// Protocol limits. docs/protocol.md lists them too; keep both in step.
const (
	// HeaderSize is the size of the fixed header that starts every message.
	HeaderSize = 8

	// MaxNameLen is the longest entry name, in bytes. It matches the longest
	// name sd_listen_fds_with_names(3) and systemd's FDNAME= accept.
	MaxNameLen = 255

	// MaxRequestSize is the largest request a holder accepts, but for a
	// load (MaxLoadRequestSize). Every other version 1 request fits in
	// under 600 bytes; anything longer is refused.
	MaxRequestSize = 1024

	// MaxReplySize is the largest reply a holder sends; list replies are
	// paged to stay under it.
	MaxReplySize = 64 << 10

	// MaxMessageFDs is the most descriptors the kernel passes in one message
	// (SCM_MAX_FD in the kernel, see unix(7)). Receive buffers have room for
	// this many so that every descriptor a peer attaches arrives and can be
	// closed, rather than being silently dropped by a truncated control
	// message.
	MaxMessageFDs = 253

	// MaxMessageLen is the longest error message or address carried.
	MaxMessageLen = 4096

	// MaxBatchEntries is the most entries one dump reply or load request
	// carries: one descriptor each, within MaxMessageFDs.
	MaxBatchEntries = MaxMessageFDs

	// MaxLoadRequestSize is the largest load request a holder reads, and
	// the size of its request buffer: a load request carries up to
	// MaxBatchEntries entries, as many as fit. Every other request must
	// still fit in MaxRequestSize.
	MaxLoadRequestSize = 64 << 10

	// MaxPatternLen is the longest name pattern of a dump request.
	MaxPatternLen = 255
)

// magic starts every message: "FH".
const magic0, magic1 = 'F', 'H'

// Op is a request's operation. A reply carries its request's Op with
// ReplyBit set.
type Op uint8

// Operations.
const (
	OpStore  Op = 1 // store the attached descriptor under a name
	OpGet    Op = 2 // reply with a duplicate of a held descriptor
	OpTake   Op = 3 // like OpGet, and remove the entry in the same step
	OpDelete Op = 4 // remove an entry and close the holder's copy
	OpList   Op = 5 // one page of entries, in name order
	OpDump   Op = 6 // one page of entries matching a pattern, with their descriptors
	OpLoad   Op = 7 // hold a batch of entries with their metadata and descriptors

	// ReplyBit marks a reply: a reply's Op is its request's Op|ReplyBit.
	ReplyBit Op = 0x80
)

func (o Op) String() string {
	switch o &^ ReplyBit {
	case OpStore:
		return "store"
	case OpGet:
		return "get"
	case OpTake:
		return "take"
	case OpDelete:
		return "delete"
	case OpList:
		return "list"
	case OpDump:
		return "dump"
	case OpLoad:
		return "load"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// valid reports whether o is a known request op (without ReplyBit).
func (o Op) valid() bool { return o >= OpStore && o <= OpLoad }

// Request flags.
const (
	// FlagReplace on OpStore replaces a held entry of the same name: the new
	// descriptor is swapped in atomically, then the old copy is closed. On
	// OpLoad it does so for each entry of the batch.
	FlagReplace uint16 = 1 << 0
)

// Reply flags.
const (
	// FlagMore on an OpList or OpDump reply says more entries follow the
	// page: ask again with the cursor set to the last name of this page.
	FlagMore uint16 = 1 << 0
)

// Code is a reply's status. CodeOK is success; every other code comes with a
// human-readable message.
type Code uint16

// Status codes. Numbers are part of the protocol: never renumber, only add.
const (
	CodeOK                 Code = 0
	CodeBadRequest         Code = 1  // malformed message
	CodeUnsupportedVersion Code = 2  // the version byte is not one the holder speaks
	CodeUnknownOp          Code = 3  // the op is not one the holder knows
	CodeInvalidName        Code = 4  // the name breaks the naming rule
	CodeNotFound           Code = 5  // no entry by that name
	CodeExists             Code = 6  // the name is held and replace was not asked for
	CodeNotSocket          Code = 7  // the descriptor is not a socket
	CodeBadDescriptors     Code = 8  // a wrong number of descriptors came with the request
	CodePermission         Code = 9  // the peer may not do this
	CodeTooLarge           Code = 10 // a message or a value exceeds a limit
	CodeLimit              Code = 11 // a holder limit (entries, connections) is reached
	CodeInternal           Code = 12 // the holder failed; the message says why
)

// Sentinel errors, one per non-OK code, for errors.Is. An *Error unwraps to
// the sentinel of its code.
var (
	ErrBadRequest         = errors.New("bad request")
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	ErrUnknownOp          = errors.New("unknown operation")
	ErrInvalidName        = errors.New("invalid name")
	ErrNotFound           = errors.New("not found")
	ErrExists             = errors.New("already held")
	ErrNotSocket          = sockfd.ErrNotSocket // one sentinel, whether the holder or a client found out
	ErrBadDescriptors     = errors.New("wrong number of descriptors")
	ErrPermission         = errors.New("permission denied")
	ErrTooLarge           = errors.New("too large")
	ErrLimit              = errors.New("limit reached")
	ErrInternal           = errors.New("internal holder error")
)

var codeErrs = [...]error{
	CodeBadRequest:         ErrBadRequest,
	CodeUnsupportedVersion: ErrUnsupportedVersion,
	CodeUnknownOp:          ErrUnknownOp,
	CodeInvalidName:        ErrInvalidName,
	CodeNotFound:           ErrNotFound,
	CodeExists:             ErrExists,
	CodeNotSocket:          ErrNotSocket,
	CodeBadDescriptors:     ErrBadDescriptors,
	CodePermission:         ErrPermission,
	CodeTooLarge:           ErrTooLarge,
	CodeLimit:              ErrLimit,
	CodeInternal:           ErrInternal,
}

// Sentinel returns the sentinel error of c: nil for CodeOK, ErrInternal for
// a code this version does not know.
func (c Code) Sentinel() error {
	if c == CodeOK {
		return nil
	}
	if int(c) < len(codeErrs) && codeErrs[c] != nil {
		return codeErrs[c]
	}
	return ErrInternal
}

func (c Code) String() string {
	if c == CodeOK {
		return "ok"
	}
	if int(c) < len(codeErrs) && codeErrs[c] != nil {
		return codeErrs[c].Error()
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// CodeOf returns CodeOK for a nil err, the code whose sentinel err wraps,
// or CodeInternal.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	for c, s := range codeErrs {
		if s != nil && errors.Is(err, s) {
			return Code(c)
		}
	}
	return CodeInternal
}

// Error is a failure reported in a reply, or one the holder is about to
// report. It unwraps to the sentinel of its code.
type Error struct {
	Code    Code
	Message string // human-readable detail, lower case, no final punctuation
}

// Errorf returns an *Error of code c with a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Message
}

// Unwrap returns the sentinel error of e's code.
func (e *Error) Unwrap() error { return e.Code.Sentinel() }

// NameRule describes the naming rule in words, for error messages.
const NameRule = "names are 1-255 bytes of A-Z a-z 0-9 . _ @ / + -, starting with a letter or digit"

// errInvalidName leaves the name out: the caller puts the op and name in front.
var errInvalidName = &Error{Code: CodeInvalidName, Message: "invalid name: " + NameRule}

// ValidateName returns nil if name follows the naming rule and an *Error of
// CodeInvalidName naming the rule otherwise. ':' is excluded because it
// separates names in LISTEN_FDNAMES (sd_listen_fds(3)).
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return errInvalidName
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum {
			continue
		}
		if i > 0 && (c == '.' || c == '_' || c == '@' || c == '/' || c == '+' || c == '-') {
			continue
		}
		return errInvalidName
	}
	return nil
}
