package holder

import "github.com/fdholder/fdholder/internal/proto"

// SetHotWait replaces how s's connections wait hot for their next request
// (proto.HotWait). Call it before Serve.
func SetHotWait(s *Server, h *proto.HotWait) { s.hot = h }
